//! RadSec: RADIUS over TLS (RFC 6614) on TCP, with client certificates. The TLS session
//! authenticates both ends; inside it packets are framed by their own Length field and use the
//! shared secret "radsec". A connecting NAS must present a certificate issued by the configured
//! CA and connect from the address of a registered RADIUS client.

use crate::handler::{Handler, Port};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tessera_radius_proto::{MAX_PACKET, MIN_PACKET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// RadSec settings.
#[derive(Clone, Debug)]
pub struct RadsecConfig {
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA(s) whose certificates NASes must present (PEM).
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RadsecError {
    #[error("RadSec: cannot read {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("RadSec: {0}")]
    Tls(String),
    #[error("cannot listen for RadSec on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(120);

pub(crate) struct Listener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.tcp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn pem_err(what: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> RadsecError {
    RadsecError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The TLS configuration: our certificate, and client certificates required from `client_ca`.
pub fn server_tls_config(cfg: &RadsecConfig) -> Result<rustls::ServerConfig, RadsecError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| pem_err("certificate", &cfg.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err("certificate", &cfg.cert, e))?;
    if certs.is_empty() {
        return Err(pem_err(
            "certificate",
            &cfg.cert,
            "no certificate in the file",
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| pem_err("private key", &cfg.key, e))?;
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.client_ca)
        .map_err(|e| pem_err("client CA", &cfg.client_ca, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err("client CA", &cfg.client_ca, e))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| pem_err("client CA", &cfg.client_ca, e))?;
    }
    if roots.is_empty() {
        return Err(pem_err(
            "client CA",
            &cfg.client_ca,
            "no certificate in the file",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| RadsecError::Tls(format!("client CA: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RadsecError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| RadsecError::Tls(format!("certificate and key: {e}")))?;
    // FreeRADIUS 3 loses the first request of a TLS 1.3 connection when session tickets
    // arrive after the handshake; RadSec connections are long-lived, tickets gain nothing.
    config.send_tls13_tickets = 0;
    Ok(config)
}

impl Listener {
    pub(crate) async fn bind(cfg: &RadsecConfig) -> Result<Self, RadsecError> {
        let tls = server_tls_config(cfg)?;
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| RadsecError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Ok(Listener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    pub(crate) async fn serve(self, handler: Arc<Handler>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = tokio::select! {
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "RadSec accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = crate::stopped(&mut stop) => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many RadSec connections: connection refused");
                continue;
            };
            // Only registered clients may even start the TLS handshake.
            if handler
                .engine()
                .snapshot()
                .radius_client_for(peer.ip(), None)
                .is_none()
            {
                tracing::warn!(%peer, "RadSec connection from an address that is no registered client refused");
                continue;
            }
            let acceptor = self.acceptor.clone();
            let handler = handler.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                connection(acceptor, stream, peer, handler, stop).await;
                drop(slot);
            });
        }
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "RadSec TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "RadSec TLS handshake timed out");
            return;
        }
    };
    tracing::info!(%peer, "RadSec connection established");
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let write_task = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if writer.write_all(&reply).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut header = [0u8; 4];
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE, reader.read_exact(&mut header)) => r,
            _ = crate::stopped(&mut stop) => break,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(%peer, "idle RadSec connection closed");
                break;
            }
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !(MIN_PACKET..=MAX_PACKET).contains(&len) {
            // The stream cannot be resynchronised after a bad length.
            tracing::warn!(%peer, len, "RadSec packet with a bad length: connection closed");
            break;
        }
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&header);
        match tokio::time::timeout(IDLE, reader.read_exact(&mut packet[4..])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let handler = handler.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(reply) = handler.handle(&packet, peer, Port::Tls).await {
                let _ = tx.send(reply).await;
            }
        });
    }
    drop(tx);
    let _ = write_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> RadsecConfig {
        RadsecConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: dir.join("ca.pem"),
        }
    }

    #[test]
    fn unreadable_or_empty_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("tessera-radsec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = server_tls_config(&config(&dir)).unwrap_err().to_string();
        assert!(e.contains("certificate") && e.contains("server.pem"), "{e}");
        std::fs::write(dir.join("server.pem"), "not a certificate\n").unwrap();
        let e = server_tls_config(&config(&dir)).unwrap_err().to_string();
        assert!(e.contains("no certificate in the file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
