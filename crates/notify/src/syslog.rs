//! Audit events to syslog receivers: RFC 5424 messages over UDP (one datagram each), TCP
//! (RFC 6587 octet counting) or TLS (RFC 5425). Records reach the forwarder through a bounded
//! queue that never waits: when a receiver is slow or down, events are dropped (and counted)
//! rather than holding up a login.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tessera_core::engine::Engine;
use tessera_core::model::AuditRecord;
use tessera_core::model::syslog::{SyslogProfile, SyslogProtocol, facility_code};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Events waiting for the forwarder at most; more are dropped.
const QUEUE: usize = 10_000;
/// Connecting and writing to a receiver.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a receiver that failed is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Our structured-data id: `tessera` under the enterprise number RFC 5612 reserves for
/// documentation (Tessera has none of its own).
const SD_ID: &str = "tessera@32473";

/// The sending side: hand it to the store's audit tap.
#[derive(Clone, Debug)]
pub struct SyslogQueue {
    tx: mpsc::Sender<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl SyslogQueue {
    /// Queues a record without waiting.
    pub fn push(&self, r: &AuditRecord) {
        if self.tx.try_send(r.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A queue and its receiving end for [`run_forwarder`].
pub fn queue() -> (SyslogQueue, mpsc::Receiver<AuditRecord>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        SyslogQueue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Forwards queued records to the syslog profiles of the current configuration until the
/// queue closes or `shutdown` resolves.
pub async fn run_forwarder(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<AuditRecord>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let host = hostname();
    let mut links: HashMap<String, Link> = HashMap::new();
    let mut down_until: HashMap<String, Instant> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let record = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let snap = engine.snapshot();
        let work = async {
            for profile in snap.syslog_profiles.values() {
                if !profile.wants(&record.action) {
                    continue;
                }
                // A receiver that failed is left alone for a while: its events are dropped
                // instead of each waiting for the timeout.
                if down_until
                    .get(&profile.name)
                    .is_some_and(|t| Instant::now() < *t)
                {
                    continue;
                }
                let line = format_record(&record, profile, &host);
                let key = format!(
                    "{}|{}|{}:{}",
                    profile.name,
                    protocol_name(profile.protocol),
                    profile.host,
                    profile.port()
                );
                let mut result = send(&mut links, &key, profile, &line).await;
                if result.is_err() && links.contains_key(&key) {
                    // A receiver that restarted: once more on a new connection.
                    links.remove(&key);
                    result = send(&mut links, &key, profile, &line).await;
                }
                if let Err(e) = result {
                    links.remove(&key);
                    down_until.insert(profile.name.clone(), Instant::now() + RETRY_AFTER);
                    tracing::warn!(profile = %profile.name, error = %e, "syslog receiver unreachable; its events are dropped for 30 s");
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = &mut shutdown => break,
        }
    }
}

fn protocol_name(p: SyslogProtocol) -> &'static str {
    match p {
        SyslogProtocol::Udp => "udp",
        SyslogProtocol::Tcp => "tcp",
        SyslogProtocol::Tls => "tls",
    }
}

async fn send(
    links: &mut HashMap<String, Link>,
    key: &str,
    profile: &SyslogProfile,
    line: &str,
) -> Result<(), String> {
    if !links.contains_key(key) {
        let link = tokio::time::timeout(IO_TIMEOUT, connect(profile))
            .await
            .map_err(|_| "no connection within 5 s".to_string())??;
        links.insert(key.to_string(), link);
    }
    let Some(link) = links.get_mut(key) else {
        return Err("no connection".into());
    };
    // UDP: one datagram, kept under what every receiver takes (RFC 5426 recommends 2048).
    let datagram = &line[..floor_char_boundary(line, 2048)];
    // TCP and TLS: RFC 6587 octet counting ("LEN SP MSG").
    let framed = format!("{} {line}", line.len());
    let write = async {
        match link {
            Link::Udp(sock) => sock.send(datagram.as_bytes()).await.map(|_| ()),
            Link::Tcp(s) => s.write_all(framed.as_bytes()).await,
            Link::Tls(s) => {
                s.write_all(framed.as_bytes()).await?;
                s.flush().await
            }
        }
    };
    tokio::time::timeout(IO_TIMEOUT, write)
        .await
        .map_err(|_| "write timed out".to_string())?
        .map_err(|e| e.to_string())
}

async fn connect(p: &SyslogProfile) -> Result<Link, String> {
    let addr = format!("{}:{}", p.host, p.port());
    match p.protocol {
        SyslogProtocol::Udp => {
            let bind = if p.host.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
            sock.connect(&addr).await.map_err(|e| e.to_string())?;
            Ok(Link::Udp(sock))
        }
        SyslogProtocol::Tcp => Ok(Link::Tcp(
            TcpStream::connect(&addr).await.map_err(|e| e.to_string())?,
        )),
        SyslogProtocol::Tls => {
            let mut roots = rustls::RootCertStore::empty();
            match &p.ca_pem {
                Some(pem) => {
                    use rustls::pki_types::CertificateDer;
                    use rustls::pki_types::pem::PemObject;
                    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                        let cert = cert.map_err(|e| format!("ca_pem: {e}"))?;
                        roots.add(cert).map_err(|e| format!("ca_pem: {e}"))?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(p.host.clone())
                .map_err(|e| format!("host: {e}"))?;
            let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Ok(Link::Tls(Box::new(tls)))
        }
    }
}

/// The largest index at most `max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The host name in the messages.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| header_field(h.trim(), 255))
        .unwrap_or_else(|_| "-".into())
}

/// A header field of RFC 5424: printable US-ASCII without spaces, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped.
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// An audit record as an RFC 5424 message.
pub fn format_record(r: &AuditRecord, profile: &SyslogProfile, host: &str) -> String {
    let facility = facility_code(&profile.facility).unwrap_or(10);
    // Informational for what went as asked, notice for refusals, warning for faults.
    let severity = match r.result.as_str() {
        "error" => 4,
        "reject" | "declined" | "denied" => 5,
        _ => 6,
    };
    let pri = u16::from(facility) * 8 + severity;
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into());
    let mut sd = format!("[{SD_ID}");
    let fields: [(&str, Option<&str>); 9] = [
        ("actor", Some(r.actor.as_str())),
        ("door", Some(r.door.as_str())),
        ("result", Some(r.result.as_str())),
        ("user", r.user.as_deref()),
        ("realm", r.realm.as_deref()),
        ("application", r.application.as_deref()),
        ("serial", r.serial.as_deref()),
        ("transaction_id", r.transaction_id.as_deref()),
        ("client_ip", r.client_ip.as_deref()),
    ];
    for (k, v) in fields {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            sd.push_str(&format!(" {k}=\"{}\"", param_value(v)));
        }
    }
    sd.push(']');
    let msg: String = r.reason.chars().filter(|c| !c.is_control()).collect();
    format!(
        "<{pri}>1 {ts} {host} tessera {} {} {sd} {msg}",
        std::process::id(),
        header_field(&r.action, 32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let s = "é".repeat(2000);
        let cut = floor_char_boundary(&s, 2048);
        assert_eq!(cut, 2048);
        assert!(s.is_char_boundary(cut));
        assert_eq!(floor_char_boundary(&s[..6], 2048), 6);
        assert_eq!(floor_char_boundary("aé", 2), 1);
    }

    #[test]
    fn records_become_rfc5424_lines() {
        let r = AuditRecord {
            id: 1,
            at_ms: 1_800_000_000_123,
            actor: "user".into(),
            action: "authenticate".into(),
            door: "radius".into(),
            user: Some("al\"ice]".into()),
            realm: Some("default".into()),
            serial: None,
            application: Some("vpn".into()),
            transaction_id: None,
            client_ip: Some("10.0.0.7".into()),
            user_agent: None,
            result: "reject".into(),
            reason: "wrong password\nsecond line".into(),
        };
        let p: SyslogProfile = serde_json::from_value(serde_json::json!({
            "name": "s", "host": "h", "facility": "local3"
        }))
        .unwrap();
        let line = format_record(&r, &p, "node1");
        let pid = std::process::id();
        assert_eq!(
            line,
            format!(
                "<157>1 2027-01-15T08:00:00.123Z node1 tessera {pid} authenticate [tessera@32473 actor=\"user\" door=\"radius\" result=\"reject\" user=\"al\\\"ice\\]\" realm=\"default\" application=\"vpn\" client_ip=\"10.0.0.7\"] wrong passwordsecond line"
            )
        );
    }
}
