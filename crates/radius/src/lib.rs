//! Tessera's RADIUS front door: Access-Request (PAP, one round or two with Access-Challenge and
//! State) and Accounting-Request over UDP, and both over TLS (RadSec, RFC 6614). Each request is
//! turned into one call on the engine; the packet loop never waits for it (password hashing and
//! directory lookups run in their own tasks).

mod guard;
mod handler;
mod radsec;

pub use guard::{DEDUP_WINDOW, Dedup, RateLimits, RequestKey, Seen};
pub use handler::{Handler, Port, RADSEC_SECRET};
pub use radsec::{RadsecConfig, RadsecError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_core::admin::AttributeCheck;
use tessera_core::engine::Engine;
use tessera_radius_proto::{Dictionary, MAX_PACKET};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Requests evaluated at once per listener; beyond it packets are dropped (the NAS retries).
const MAX_IN_FLIGHT: usize = 4096;

/// Where to listen.
#[derive(Clone, Debug)]
pub struct RadiusListen {
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub radsec: Option<RadsecConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum RadiusError {
    #[error("cannot listen for RADIUS {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Radsec(#[from] RadsecError),
}

/// The bound RADIUS listeners, not yet serving.
#[derive(Debug)]
pub struct RadiusServer {
    handler: Arc<Handler>,
    auth: Arc<UdpSocket>,
    acct: Arc<UdpSocket>,
    radsec: Option<radsec::Listener>,
}

impl RadiusServer {
    pub async fn bind(engine: Arc<Engine>, listen: &RadiusListen) -> Result<Self, RadiusError> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            UdpSocket::bind(addr)
                .await
                .map(Arc::new)
                .map_err(|source| RadiusError::Bind { what, addr, source })
        };
        let auth = bind("authentication", listen.auth).await?;
        let acct = bind("accounting", listen.acct).await?;
        let radsec = match &listen.radsec {
            Some(cfg) => Some(radsec::Listener::bind(cfg).await?),
            None => None,
        };
        Ok(RadiusServer {
            handler: Arc::new(Handler::new(engine)),
            auth,
            acct,
            radsec,
        })
    }

    pub fn auth_addr(&self) -> Option<SocketAddr> {
        self.auth.local_addr().ok()
    }

    pub fn acct_addr(&self) -> Option<SocketAddr> {
        self.acct.local_addr().ok()
    }

    pub fn radsec_addr(&self) -> Option<SocketAddr> {
        self.radsec.as_ref().and_then(|l| l.local_addr())
    }

    /// Serves until `stop` turns true.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(udp_loop(
                self.handler.clone(),
                self.auth,
                Port::Auth,
                stop.clone(),
            )),
            tokio::spawn(udp_loop(
                self.handler.clone(),
                self.acct,
                Port::Acct,
                stop.clone(),
            )),
        ];
        if let Some(l) = self.radsec {
            tasks.push(tokio::spawn(l.serve(self.handler.clone(), stop.clone())));
        }
        let handler = self.handler;
        let mut rx = stop;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => handler.purge(),
                    _ = crate::stopped(&mut rx) => break,
                }
            }
        }));
        tasks
    }
}

async fn udp_loop(
    handler: Arc<Handler>,
    socket: Arc<UdpSocket>,
    port: Port,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let (n, source) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors of earlier sends surface here on some systems; keep going.
                    tracing::debug!(error = %e, "RADIUS receive error");
                    continue;
                }
            },
            _ = crate::stopped(&mut stop) => break,
        };
        if n > MAX_PACKET {
            tracing::debug!(%source, "oversized RADIUS datagram dropped");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("tessera_radius_dropped_total", "reason" => "overloaded", "port" => "udp")
                .increment(1);
            continue;
        };
        let packet = buf[..n].to_vec();
        let handler = handler.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Some(reply) = handler.handle(&packet, source, port).await
                && let Err(e) = socket.send_to(&reply, source).await
            {
                tracing::warn!(%source, error = %e, "RADIUS reply could not be sent");
            }
            drop(permit);
        });
    }
    // Let requests in flight finish (bounded).
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        limit.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Checks reply-rule attributes against Tessera's RADIUS dictionary.
#[derive(Debug, Default)]
pub struct DictionaryCheck;

impl AttributeCheck for DictionaryCheck {
    fn check_reply(&self, attribute: &str, value: Option<&str>) -> Result<(), String> {
        let dict = Dictionary::builtin();
        let def = dict.attribute(attribute).ok_or_else(|| {
            format!("unknown RADIUS attribute '{attribute}' (see `tessera client attributes`)")
        })?;
        match value {
            Some(v) => dict.encode(def, v).map(|_| ()).map_err(|e| e.to_string()),
            None if def.settable_in_reply() => Ok(()),
            None => Err(format!("{attribute} cannot be set in a reply")),
        }
    }

    fn check_request(&self, attribute: &str) -> Result<(), String> {
        Dictionary::builtin()
            .attribute(attribute)
            .map(|_| ())
            .ok_or_else(|| format!("unknown RADIUS attribute '{attribute}'"))
    }
}
