//! Audit events to syslog receivers on loopback, over UDP, TCP (octet counting) and TLS: well-
//! formed RFC 5424 lines, the events each profile asked for, and a receiver that does not answer
//! never slowing logins down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_core::admin::Declaration;
use tessera_core::model::Method;
use tokio::io::AsyncReadExt;

/// The parts of an RFC 5424 line: PRI, timestamp, host, app, procid, msgid, SD, message.
fn parse(line: &str) -> (u16, String, String, String, String, String, String) {
    let rest = line.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once(">1 ").expect("version 1");
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next().unwrap().to_string();
    let host = parts.next().unwrap().to_string();
    let app = parts.next().unwrap().to_string();
    let pid = parts.next().unwrap().to_string();
    let msgid = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    assert!(rest.starts_with("[tessera@32473 "), "{line}");
    // The SD ends at the first unescaped `]`.
    let mut end = 0;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b']' => {
                end = i;
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let sd = rest[..=end].to_string();
    let msg = rest[end + 1..].trim_start().to_string();
    time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| panic!("timestamp {ts}"));
    assert!(pid.parse::<u32>().is_ok());
    assert_eq!(app, "tessera");
    (
        pri.parse().unwrap(),
        ts,
        host,
        app,
        pid,
        msgid,
        format!("{sd}|{msg}"),
    )
}

/// Reads octet-counted frames ("LEN SP MSG") from a stream into `lines`.
async fn read_frames(mut s: impl tokio::io::AsyncRead + Unpin, lines: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            let line = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
            lines.lock().unwrap().push(line);
            buf.drain(..sp + 1 + len);
        }
    }
}

async fn wait_lines(lines: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let got = lines.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{n} expected: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_reach_udp_tcp_and_tls_receivers() {
    // UDP
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let udp_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = udp_lines.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = [0u8; 65536];
        while let Ok(n) = udp.recv(&mut buf).await {
            sink.lock()
                .unwrap()
                .push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
    });
    // TCP
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let tcp_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = tcp_lines.clone();
    let tcp_task = tokio::spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            tokio::spawn(read_frames(s, sink.clone()));
        }
    });
    // TLS, with a certificate for 127.0.0.1 from a test CA.
    let dir = tempfile::tempdir().unwrap();
    tessera_testkit::slapd::certificates(dir.path());
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let config = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer> =
            CertificateDer::pem_file_iter(dir.path().join("server.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.path().join("server.key")).unwrap();
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = tls.local_addr().unwrap().port();
    let tls_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = tls_lines.clone();
    let tls_task = tokio::spawn(async move {
        while let Ok((s, _)) = tls.accept().await {
            if let Ok(stream) = acceptor.accept(s).await {
                tokio::spawn(read_frames(stream, sink.clone()));
            }
        }
    });

    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("pw", &[&[Method::Password]]).await;
    let decl: Declaration = serde_json::from_value(json!({
        "syslog_profile": [
            {"name": "logins", "host": "127.0.0.1", "port": udp_port, "protocol": "udp",
             "events": ["authenticate"]},
            {"name": "admin", "host": "127.0.0.1", "port": tcp_port, "protocol": "tcp",
             "facility": "local3", "events": ["user_*"]},
            {"name": "siem", "host": "127.0.0.1", "port": tls_port, "protocol": "tls",
             "ca_pem": ca}
        ]
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();

    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "wrong")]).await.0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "ACCEPT"
    );
    s.add_user("bob", None).await;

    // UDP: the two logins only; a refusal is a notice (authpriv.notice = 85), an accept info (86).
    let lines = wait_lines(&udp_lines, 2).await;
    let (pri, _, _, _, _, msgid, rest) = parse(&lines[0]);
    assert_eq!((pri, msgid.as_str()), (85, "authenticate"), "{}", lines[0]);
    assert!(
        rest.contains("user=\"alice\"") && rest.contains("result=\"reject\""),
        "{rest}"
    );
    assert!(rest.contains("|wrong password (attempt 1 of 5)"), "{rest}");
    let (pri, ..) = parse(&lines[1]);
    assert_eq!(pri, 86);
    // TCP: only user changes (local3.info = 158).
    let lines = wait_lines(&tcp_lines, 1).await;
    let (pri, _, _, _, _, msgid, rest) = parse(&lines[0]);
    assert_eq!((pri, msgid.as_str()), (158, "user_create"), "{}", lines[0]);
    assert!(rest.contains("created"), "{rest}");
    // TLS: everything, including the logins and the configuration change.
    let lines = wait_lines(&tls_lines, 3).await;
    let actions: Vec<String> = lines.iter().map(|l| parse(l).5).collect();
    for want in ["authenticate", "user_create"] {
        assert!(actions.iter().any(|a| a == want), "{want}: {actions:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        udp_lines.lock().unwrap().len(),
        2,
        "only the events asked for"
    );
    s.stop().await;
    udp_task.abort();
    tcp_task.abort();
    tls_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syslog_receiver_that_never_answers_does_not_slow_logins() {
    // Accepts connections and never answers: a TLS handshake with it waits for the 5 s
    // timeout, every time (the forwarder reconnects for each event).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("pw", &[&[Method::Password]]).await;
    let decl: Declaration = serde_json::from_value(json!({
        "syslog_profile": [{"name": "stuck", "host": "127.0.0.1", "port": port,
                            "protocol": "tls"}]
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(
            s.check(&[("user", "alice"), ("pass", "alice-password")])
                .await
                .0,
            "ACCEPT"
        );
    }
    // Waiting for the receiver would take 50 × 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
    hold.abort();
}
