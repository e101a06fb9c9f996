//! The RADIUS front door against real RADIUS clients: pyrad (PyPI, `.venv/radius`) and
//! FreeRADIUS's `radclient` (Debian freeradius-utils), both installed by scripts/test.sh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor, pyrad, radclient, radclient_attr, root};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use tessera_core::model::{Method, RadiusClient, TokenKind};

const SECRET: &str = "s3cret-for-the-tests";

/// Users, tokens, applications and the RADIUS client `vpn` every test here starts from.
async fn setup(backend: Backend) -> TestServer {
    let s = TestServer::start(backend, Some(1_800_000_010)).await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll("alice", TokenKind::Hotp, "OATHALICE", None).await;
    s.enroll("bob", TokenKind::Hotp, "OATHBOB", Some("1234"))
        .await;
    // Password, then the OTP in a second round (Access-Challenge).
    s.use_app("vpn-2fa", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    // Password and OTP in one field.
    s.use_app("vpn-1r", &[&[Method::PasswordOtp]]).await;
    // Token PIN + OTP (privacyIDEA's behaviour).
    s.use_app("pin-otp", &[&[Method::SoftOtp]]).await;
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "vpn",
        "device_type": "vpn",
        "nas_ip": ["127.0.0.1"],
        "secret": SECRET,
        "application": "vpn-2fa",
        "application_rules": [
            {"attribute": "NAS-Identifier", "matches": "onestep*", "application": "vpn-1r"},
            {"attribute": "NAS-Identifier", "matches": "pin*", "application": "pin-otp"}
        ],
        "reply_rules": [
            {"priority": 10, "user_attribute": "groups", "equals": "staff",
             "reply_attribute": "Fortinet-Group-Name", "value": "Staff"},
            {"priority": 20, "mode": "dynamic", "user_attribute": "email",
             "reply_attribute": "Class"}
        ],
        "messages": {"reject": "Access denied"}
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    s
}

fn addrs(s: &TestServer) -> (SocketAddr, SocketAddr) {
    let r = s.running.as_ref().unwrap();
    (r.radius_auth_addr.unwrap(), r.radius_acct_addr.unwrap())
}

both_backends!(pyrad_logs_in_through_every_flow_and_is_dropped_when_it_should);

async fn pyrad_logs_in_through_every_flow_and_is_dropped_when_it_should(backend: Backend) {
    let s = setup(backend).await;
    let (auth, acct) = addrs(&s);
    let steps = json!([
        // 0-1: two rounds: password, then the OTP answering the challenge.
        {"op": "auth", "user": "alice", "password": "alice-password", "secret": SECRET},
        {"op": "auth", "user": "alice", "password": s.hotp(0), "secret": SECRET, "state_from": 0},
        // 2: a wrong password.
        {"op": "auth", "user": "alice", "password": "wrong", "secret": SECRET},
        // 3: one round, password + OTP in one field (chosen by NAS-Identifier).
        {"op": "auth", "user": "alice", "password": format!("alice-password{}", s.hotp(1)),
         "secret": SECRET, "attrs": {"NAS-Identifier": "onestep-fw"}},
        // 4: token PIN + OTP.
        {"op": "auth", "user": "bob", "password": format!("1234{}", s.hotp(0)),
         "secret": SECRET, "attrs": {"NAS-Identifier": "pin-gw"}},
        // 5: the wrong shared secret: dropped.
        {"op": "auth", "user": "alice", "password": "alice-password", "secret": "not-the-secret"},
        // 6: no Message-Authenticator: dropped (BlastRADIUS).
        {"op": "auth", "user": "alice", "password": "alice-password", "secret": SECRET, "ma": false},
        // 7: accounting start, answered.
        {"op": "acct", "secret": SECRET, "attrs": {"Acct-Status-Type": "Start",
         "Acct-Session-Id": "sess-42", "User-Name": "alice", "Framed-IP-Address": "10.8.0.7"}},
        // 8: accounting stop with counters.
        {"op": "acct", "secret": SECRET, "attrs": {"Acct-Status-Type": "Stop",
         "Acct-Session-Id": "sess-42", "User-Name": "alice", "Acct-Input-Octets": 1234,
         "Acct-Output-Octets": 5678, "Acct-Session-Time": 360, "Acct-Terminate-Cause": "User-Request"}},
        // 9: accounting with the wrong secret: dropped.
        {"op": "acct", "secret": "not-the-secret", "attrs": {"Acct-Status-Type": "Start",
         "Acct-Session-Id": "x", "User-Name": "alice"}},
        // 10: the same packet twice: one evaluation, the same reply twice.
        {"op": "duplicate", "user": "alice", "password": format!("alice-password{}", s.hotp(2)),
         "secret": SECRET, "attrs": {"NAS-Identifier": "onestep-fw"}},
        // 11-14: malformed datagrams: no reply.
        {"op": "raw", "hex": "0102"},
        {"op": "raw", "hex": format!("0101ffff{}", "00".repeat(16))},
        {"op": "raw", "hex": format!("01010017{}0109", "00".repeat(16))},
        {"op": "raw", "hex": format!("01010016{}0100", "00".repeat(16))},
        // 15: and the server still answers.
        {"op": "auth", "user": "alice", "password": "wrong", "secret": SECRET}
    ]);
    let r = pyrad(auth, acct, steps);

    // Access-Challenge with State and a prompt; Message-Authenticator first in every reply.
    assert_eq!(r[0]["code"], 11, "{}", r[0]);
    assert!(r[0]["ma_first"].as_bool().unwrap());
    assert_eq!(
        r[0]["attrs"]["Reply-Message"][0],
        "Please enter the OTP from your authenticator"
    );
    assert_eq!(r[0]["state"].as_str().unwrap().len(), 40, "20 digits");
    // Access-Accept with the reply-rule attributes.
    assert_eq!(r[1]["code"], 2, "{}", r[1]);
    assert!(r[1]["ma_first"].as_bool().unwrap());
    assert_eq!(r[1]["attrs"]["Fortinet-Group-Name"][0], "Staff");
    assert_eq!(r[1]["attrs"]["Class"][0], "alice@example.org");
    // Access-Reject with the client's reject text.
    assert_eq!(r[2]["code"], 3, "{}", r[2]);
    assert_eq!(r[2]["attrs"]["Reply-Message"][0], "Access denied");
    assert_eq!(r[3]["code"], 2, "one round: {}", r[3]);
    assert_eq!(r[4]["code"], 2, "PIN+OTP: {}", r[4]);
    assert_eq!(
        r[5],
        json!({"timeout": true}),
        "wrong secret must be dropped"
    );
    assert_eq!(
        r[6],
        json!({"timeout": true}),
        "no Message-Authenticator must be dropped"
    );
    assert_eq!(r[7]["code"], 5, "{}", r[7]);
    assert_eq!(r[8]["code"], 5, "{}", r[8]);
    assert_eq!(r[9], json!({"timeout": true}));
    let dup = &r[10];
    assert_eq!(dup["codes"], json!([2, 2]), "{dup}");
    assert_eq!(dup["replies"][0], dup["replies"][1]);
    for (i, step) in r[11..15].iter().enumerate() {
        assert_eq!(*step, json!({"timeout": true}), "malformed packet {i}");
    }
    assert_eq!(r[15]["code"], 3);

    // What reached the engine: every answered Access-Request once (the duplicate once, the
    // dropped ones never).
    let decisions = s.audit("authenticate").await;
    assert_eq!(decisions.len(), 7, "{decisions:#?}");
    assert!(decisions.iter().all(|d| d.door == "radius"));
    let accounting = s.audit("accounting").await;
    assert_eq!(accounting.len(), 2, "{accounting:#?}");
    let stop = &accounting[0];
    assert_eq!(stop.result, "stop");
    assert_eq!(stop.user.as_deref(), Some("alice"));
    assert_eq!(stop.actor, "nas:vpn");
    assert!(
        stop.reason
            .contains("session sess-42; in 1234 octets; out 5678 octets; time 360 s"),
        "{}",
        stop.reason
    );
    assert!(
        stop.reason.contains("cause User-Request"),
        "{}",
        stop.reason
    );
    assert_eq!(accounting[1].result, "start");
    assert_eq!(accounting[1].client_ip.as_deref(), Some("10.8.0.7"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_two_rounds_reply_attributes_and_accounting() {
    let s = setup(Backend::Sqlite).await;
    let (auth, acct) = addrs(&s);
    let (ok, out) = radclient(
        auth,
        "auth",
        SECRET,
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(!ok, "a challenge is no success for radclient: {out}");
    assert!(out.contains("Received Access-Challenge"), "{out}");
    let state = radclient_attr(&out, "State").expect("State");
    let prompt = radclient_attr(&out, "Reply-Message").expect("Reply-Message");
    assert_eq!(prompt, "Please enter the OTP from your authenticator");
    let (ok, out) = radclient(
        auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = alice\nUser-Password = {}\nState = {state}\nMessage-Authenticator = 0x00\n",
            s.hotp(0)
        ),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert_eq!(
        radclient_attr(&out, "Fortinet-Group-Name").as_deref(),
        Some("Staff")
    );
    assert_eq!(
        radclient_attr(&out, "Class").as_deref(),
        Some(format!("0x{}", hex("alice@example.org")).as_str())
    );
    // The same State cannot be used again.
    let (_, out) = radclient(
        auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = alice\nUser-Password = {}\nState = {state}\nMessage-Authenticator = 0x00\n",
            s.hotp(1)
        ),
    );
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert_eq!(
        radclient_attr(&out, "Reply-Message").as_deref(),
        Some("Access denied")
    );
    // Accounting.
    let (ok, out) = radclient(
        acct,
        "acct",
        SECRET,
        "Acct-Status-Type = Interim-Update\nAcct-Session-Id = rc-1\nUser-Name = alice\nAcct-Input-Octets = 10\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("Received Accounting-Response"), "{out}");
    let rec = &s.audit("accounting").await[0];
    assert_eq!(rec.result, "interim-update");
    assert!(
        rec.reason.contains("session rc-1; in 10 octets"),
        "{}",
        rec.reason
    );
    // A wrong secret, and no Message-Authenticator: no reply at all.
    let (ok, out) = radclient(
        auth,
        "auth",
        "wrong-secret",
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(!ok && !out.contains("Received"), "{out}");
    let (ok, out) = radclient(
        auth,
        "auth",
        SECRET,
        "User-Name = alice\nUser-Password = alice-password\n",
    );
    assert!(!ok && !out.contains("Received"), "{out}");
    // Status-Server (RFC 5997) answers for monitoring.
    let (ok, out) = radclient(auth, "status", SECRET, "Message-Authenticator = 0x00\n");
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // On the accounting port it is answered with Accounting-Response (RFC 5997 §3).
    let (_, out) = radclient(acct, "status", SECRET, "Message-Authenticator = 0x00\n");
    assert!(out.contains("Received Accounting-Response"), "{out}");
    assert!(!out.contains("invalid"), "{out}");
    s.stop().await;
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_clients_may_skip_message_authenticator_when_allowed() {
    let s = setup(Backend::Sqlite).await;
    let (auth, _) = addrs(&s);
    let mut c = s.admin().get::<RadiusClient>("vpn").unwrap();
    c.require_message_authenticator = false;
    s.admin().put(&actor(), c).await.unwrap();
    let (ok, out) = radclient(
        auth,
        "auth",
        SECRET,
        "User-Name = alice\nUser-Password = alice-password\n",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Received Access-Challenge"), "{out}");
    // Our reply still carries Message-Authenticator.
    assert!(
        radclient_attr(&out, "Message-Authenticator").is_some(),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_nas_addresses_get_no_answer() {
    let s = setup(Backend::Sqlite).await;
    let (auth, _) = addrs(&s);
    let mut c = s.admin().get::<RadiusClient>("vpn").unwrap();
    c.nas_ip = vec!["192.0.2.0/24".parse().unwrap()];
    s.admin().put(&actor(), c).await.unwrap();
    let (ok, out) = radclient(
        auth,
        "auth",
        SECRET,
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(!ok && !out.contains("Received"), "{out}");
    assert!(s.audit("authenticate").await.is_empty());
    s.stop().await;
}

/// A FreeRADIUS 3 process run from a temporary configuration directory.
struct FreeRadius {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// The UDP port it listens on (`FR_LISTEN_PORT` in its configuration).
    port: u16,
}

impl FreeRadius {
    /// Starts `freeradius -f` on `conf` (a file of tests/peers/freeradius) with `env` and
    /// `FR_LISTEN_PORT` a free port; `files` are copied next to it. Waits until it is ready.
    /// The port is free when picked, not when FreeRADIUS binds it: a test beside this one
    /// may take it first, and FreeRADIUS, unable to bind, exits — then it starts again on
    /// another.
    fn start(conf: &str, env: &[(&str, String)], files: &[(&str, &std::path::Path)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            root().join("tests/peers/freeradius").join(conf),
            dir.path().join("radiusd.conf"),
        )
        .unwrap();
        for (name, from) in files {
            let to = dir.path().join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
        let log = dir.path().join("out.log");
        let mut attempt = 0;
        let mut fr = loop {
            attempt += 1;
            let port = free_udp_port();
            let mut cmd = Command::new("freeradius");
            cmd.args(["-f", "-xx", "-l", "stdout", "-d"])
                .arg(dir.path())
                .env("FR_LISTEN_PORT", port.to_string())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .spawn()
                .expect("freeradius (Debian package freeradius; scripts/test.sh installs it)");
            let mut exited = false;
            for _ in 0..100 {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                if out.contains("Ready to process requests") {
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if exited && attempt < 5 {
                continue;
            }
            break FreeRadius {
                child,
                _dir: dir,
                log,
                port,
            };
        };
        if fr.output().contains("Ready to process requests") {
            return fr;
        }
        let _ = fr.child.kill();
        panic!("FreeRADIUS did not start:\n{}", fr.output());
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port free right now on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Logs in through the proxy at `proxy` in two rounds; returns radclient's output of the
/// second round.
fn two_rounds_through(proxy: SocketAddr, otp: &str, fr: &FreeRadius) -> String {
    let (_, out) = radclient(
        proxy,
        "auth",
        "proxy-secret",
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(
        out.contains("Received Access-Challenge"),
        "{out}\n--- FreeRADIUS:\n{}",
        fr.output()
    );
    let state = radclient_attr(&out, "State").expect("State passed through");
    assert_eq!(
        radclient_attr(&out, "Reply-Message").as_deref(),
        Some("Please enter the OTP from your authenticator")
    );
    let (ok, out) = radclient(
        proxy,
        "auth",
        "proxy-secret",
        &format!(
            "User-Name = alice\nUser-Password = {otp}\nState = {state}\nMessage-Authenticator = 0x00\n"
        ),
    );
    assert!(ok, "{out}\n--- FreeRADIUS:\n{}", fr.output());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeradius_as_a_proxy_passes_the_challenge_through() {
    let s = setup(Backend::Sqlite).await;
    let (auth, _) = addrs(&s);
    let fr = FreeRadius::start(
        "proxy.conf",
        &[
            ("FR_CLIENT_SECRET", "proxy-secret".into()),
            ("FR_HOME_PORT", auth.port().to_string()),
            ("FR_HOME_SECRET", SECRET.into()),
        ],
        &[],
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], fr.port));
    let out = two_rounds_through(proxy, &s.hotp(0), &fr);
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert_eq!(
        radclient_attr(&out, "Fortinet-Group-Name").as_deref(),
        Some("Staff")
    );
    // Both rounds reached Tessera through the proxy, with its Message-Authenticator.
    let decisions = s.audit("authenticate").await;
    assert_eq!(decisions.len(), 2, "{decisions:#?}");
    assert_eq!(decisions[0].result, "accept");
    assert_eq!(decisions[1].result, "challenge");
    drop(fr);
    s.stop().await;
}

/// A throwaway PKI made with the openssl CLI: CA, server (Tessera) and client (the NAS).
fn make_pki(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for (name, cn, eku, san) in [
        (
            "server",
            "127.0.0.1",
            "serverAuth",
            Some("subjectAltName=IP:127.0.0.1"),
        ),
        ("client", "nas-1", "clientAuth", None),
    ] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let mut ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={eku}\n"
        );
        if let Some(san) = san {
            ext.push_str(san);
            ext.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radsec_from_freeradius_with_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let p = pki.path().to_path_buf();
    let s = TestServer::start_configured(Backend::Sqlite, Some(1_800_000_010), |c| {
        c.radsec = Some(tessera_radius::RadsecConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: p.join("server.pem"),
            key: p.join("server.key"),
            client_ca: p.join("ca.pem"),
        });
    })
    .await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll("alice", TokenKind::Hotp, "OATHALICE", None).await;
    s.use_app("vpn-2fa", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "radsec-nas", "nas_ip": ["127.0.0.1"], "secret": SECRET, "application": "vpn-2fa"
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    let radsec = s.running.as_ref().unwrap().radsec_addr.unwrap();

    let fr = FreeRadius::start(
        "radsec-proxy.conf",
        &[
            ("FR_CLIENT_SECRET", "proxy-secret".into()),
            ("FR_TLS_PORT", radsec.port().to_string()),
        ],
        &[
            ("certs/ca.pem", &p.join("ca.pem")),
            ("certs/client.pem", &p.join("client.pem")),
            ("certs/client.key", &p.join("client.key")),
        ],
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], fr.port));
    let out = two_rounds_through(proxy, &s.hotp(0), &fr);
    assert!(out.contains("Received Access-Accept"), "{out}");
    drop(fr);

    // A TLS client without a certificate from the CA is refused during the handshake.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-connect",
            &radsec.to_string(),
            "-CAfile",
        ])
        .arg(p.join("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alert") || text.contains("certificate required"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_limit_are_dropped() {
    let s = setup(Backend::Sqlite).await;
    let (auth, _) = addrs(&s);
    let mut c = s.admin().get::<RadiusClient>("vpn").unwrap();
    c.rate_limit = Some(1);
    s.admin().put(&actor(), c).await.unwrap();
    let request = "User-Name = alice\nUser-Password = wrong\nMessage-Authenticator = 0x00\n";
    let (_, out) = radclient(auth, "auth", SECRET, request);
    assert!(out.contains("Received Access-Reject"), "{out}");
    // The bucket holds one request per second: the next one right away is dropped.
    let (_, out) = radclient(auth, "auth", SECRET, request);
    assert!(!out.contains("Received"), "{out}");
    assert_eq!(s.audit("authenticate").await.len(), 1);
    s.stop().await;
}
