//! The HTTP listener: hyper's HTTP/1.1 connections with the limits a server facing the network
//! needs and axum's `serve` does not set — connections at most in all and per client address,
//! and a deadline for every request's headers (also between requests of a kept-alive
//! connection: an idle or half-sent connection is closed). The body's deadline is the
//! router's (`limits::body_deadline`).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

/// The limits of the HTTP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 address by its /64) may hold open; further ones
    /// are closed at once.
    pub max_per_address: usize,
    /// How long a request's headers may take to arrive (and a kept-alive connection may wait
    /// for the next request), and then its body.
    pub read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            max_per_address: 256,
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Takes a place for a connection of `ip`: false when it holds `max` already.
    fn take(&self, ip: IpAddr, max: usize) -> bool {
        let Ok(mut open) = self.0.lock() else {
            return true;
        };
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        // (Through `Place`, also when a connection's task unwinds.)
        if let Ok(mut open) = self.0.lock()
            && let Some(n) = open.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// A connection's place among its address's: given back when the connection ends, however.
struct Place {
    open: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.give_back(self.ip);
    }
}

/// How long the requests in flight may take to finish once the listener stops.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` (with the peer's address as `ConnectInfo<SocketAddr>`) until
/// `shutdown` resolves, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let group = tessera_core::netmatch::client_group(remote.ip());
        if !per_address.take(group, limits.max_per_address) {
            tracing::warn!(client = %group, "too many connections from one address: closed");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Ok(service) = make.call(remote).await;
        let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let place = Place {
            open: per_address.clone(),
            ip: group,
        };
        tokio::spawn(async move {
            let _held = (place, slot);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 30 s: closed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_address() {
        let p = PerAddress::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(p.take(a, 2) && p.take(a, 2));
        assert!(!p.take(a, 2));
        p.give_back(a);
        assert!(p.take(a, 2));
        p.give_back(a);
        p.give_back(a);
        assert!(p.0.lock().unwrap().is_empty());
    }
}
