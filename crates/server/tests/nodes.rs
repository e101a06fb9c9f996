//! The server as separate processes: replay protection under concurrency and across two nodes
//! sharing PostgreSQL, restarts, the master key, first start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, SEED_B32, TestServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_core::model::TokenKind;
use tessera_testkit::{PgDatabase, oathtool_totp};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A `tessera serve` process.
struct Node {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(data_dir: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--http-listen")
            .arg("127.0.0.1:0")
            .arg("--radius-listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("off")
            .arg("--data-dir")
            .arg(data_dir)
            .env("TESSERA_CLUSTER_CONFIG_POLL_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(u) = database_url {
            cmd.arg("--database-url").arg(u);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => panic!("node did not start: {:?}", log.lock().unwrap()),
        };
        Node {
            child,
            url: format!("http://{addr}"),
            log,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "node did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A TOTP code with at least 5 seconds left in its step, so a test does not straddle steps.
fn fresh_code() -> String {
    while 30 - now() % 30 < 5 {
        std::thread::sleep(Duration::from_millis(200));
    }
    oathtool_totp(SEED_B32, now(), 6, 30, "sha1")
}

async fn check(http: &reqwest::Client, url: &str, user: &str, pass: &str) -> String {
    let body: Value = http
        .post(format!("{url}/validate/check"))
        .form(&[("user", user), ("pass", pass)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["result"]["authentication"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

both_backends!(same_otp_fifty_times_concurrently_is_accepted_once);

async fn same_otp_fifty_times_concurrently_is_accepted_once(b: Backend) {
    let s = TestServer::start(b, Some(1_800_000_010)).await;
    s.add_user("alice", None).await;
    s.enroll("alice", TokenKind::Totp, "TOTPRACE", None).await;
    let code = s.totp(0);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, code) = (s.http.clone(), s.url.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            check(&http, &url, "alice", &code).await
        }));
    }
    let mut accepts = 0;
    for t in tasks {
        match t.await.unwrap().as_str() {
            "ACCEPT" => accepts += 1,
            "REJECT" => {}
            other => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!(accepts, 1);
    let audit = s.audit("authenticate").await;
    assert_eq!(audit.iter().filter(|r| r.result == "accept").count(), 1);
    assert_eq!(audit.len(), 50);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_postgres() {
    let pg = PgDatabase::create().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let key = "qlwmD7y9gEcmtJyW4ti7OAwqJtbiyyc1mMIMBg0XBGo=";
    let env = [("TESSERA_MASTER_KEY", key)];
    let db = pg.url.as_str();
    let base = [
        "--data-dir",
        dir_a.path().to_str().unwrap(),
        "--database-url",
        db,
    ];
    let run = |extra: &[&str], stdin: Option<&str>| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend_from_slice(&base);
        let (ok, out, err) = cli(&args, &env, stdin);
        assert!(ok, "tessera {extra:?}: {err}");
        out
    };
    run(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    let out = run(
        &[
            "token", "enroll", "totp", "--user", "alice", "--secret", SEED_B32, "--json",
        ],
        None,
    );
    let enrolled: Value = serde_json::from_str(&out).unwrap();
    let serial = enrolled["token"]["serial"].as_str().unwrap().to_string();
    // The 49 refused replays below would lock alice (rightly); this test is about the OTP.
    run(
        &[
            "settings",
            "set",
            "argon2_memory_kib=8192",
            "argon2_iterations=1",
            "account_locking=false",
        ],
        None,
    );

    let a = Node::start(dir_a.path(), Some(db), &env);
    let b = Node::start(dir_b.path(), Some(db), &env);
    let http = common::http_client();

    // One OTP, fifty requests split between the nodes: exactly one is accepted.
    let code = fresh_code();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let (http, code) = (http.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            check(&http, &url, "alice", &code).await
        }));
    }
    let mut accepts = 0;
    for t in tasks {
        if t.await.unwrap() == "ACCEPT" {
            accepts += 1;
        }
    }
    assert_eq!(accepts, 1);
    // The 49 refused replays count against the token (max fail 10): an administrator resets it.
    let shown = run(&["token", "show", "--json", &serial], None);
    let token: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(token["locked"], true);
    run(&["token", "reset", &serial], None);

    // A change made through the CLI reaches both running nodes without a restart, and a
    // challenge started on one node is answered on the other.
    run(
        &[
            "app", "add", "vpn", "--factor", "password", "--factor", "soft_otp",
        ],
        None,
    );
    run(&["settings", "set", "validate_application=vpn"], None);
    let started = Instant::now();
    loop {
        let ra = check(&http, &a.url, "alice", "alice-password").await;
        let rb = check(&http, &b.url, "alice", "alice-password").await;
        if ra == "CHALLENGE" && rb == "CHALLENGE" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nodes did not pick up the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body: Value = http
        .post(format!("{}/validate/check", a.url))
        .form(&[("user", "alice"), ("pass", "alice-password")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait for the next time step so that the code is new.
    while oathtool_totp(SEED_B32, now(), 6, 30, "sha1") == code {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let next = fresh_code();
    let body: Value = http
        .post(format!("{}/validate/check", b.url))
        .form(&[
            ("user", "alice"),
            ("transaction_id", tx.as_str()),
            ("pass", next.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audit = run(&["audit", "--limit", "3"], None);
    assert_eq!(
        body["result"]["authentication"], "ACCEPT",
        "{body}\n{audit}"
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_no_seed_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (ok, _, err) = cli(
        &[
            "user",
            "add",
            "alice",
            "--data-dir",
            d,
            "--email",
            "a@example.org",
        ],
        &[],
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &[
            "token",
            "enroll",
            "totp",
            "--user",
            "alice",
            "--secret",
            SEED_B32,
            "--serial",
            "TOTPKEEP",
            "--data-dir",
            d,
            "--json",
        ],
        &[],
        None,
    );
    assert!(ok, "{err}");
    let enrolled: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(enrolled["secret"], SEED_B32);

    let node = Node::start(&data, None, &[]);
    let http = common::http_client();
    let code = fresh_code();
    assert_eq!(check(&http, &node.url, "alice", &code).await, "ACCEPT");
    let status = node.stop();
    assert!(status.success(), "graceful shutdown exits 0");

    let node = Node::start(&data, None, &[]);
    assert_eq!(
        check(&http, &node.url, "alice", &code).await,
        "REJECT",
        "still spent after a restart"
    );
    let (ok, out, _) = cli(
        &["token", "show", "TOTPKEEP", "--data-dir", d, "--json"],
        &[],
        None,
    );
    assert!(ok);
    let token: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(token["user"], "alice");
    assert_eq!(token["count_auth_success"], 1);
    let log = node.log.clone();
    assert!(node.stop().success());
    assert!(log.lock().unwrap().join("\n").contains("shutting down"));

    // The database files hold no seed in clear (neither raw nor base32).
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("tessera.db")
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(bytes.len() > 10_000);
    assert!(!bytes.windows(20).any(|w| w == b"12345678901234567890"));
    assert!(!bytes.windows(32).any(|w| w == SEED_B32.as_bytes()));
    // The user and token are there (the check above is not vacuous).
    assert!(bytes.windows(8).any(|w| w == b"TOTPKEEP"));
}

#[test]
fn first_start_creates_private_data_and_explains_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let node = Node::start(&data, None, &[]);
    let started = Instant::now();
    while !node.log_text().contains("then sign in") && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = node.log_text();
    assert!(log.contains("Created the master key"), "{log}");
    // The command as it runs from here (asking for the password at a terminal).
    assert!(
        log.contains(&format!(
            " --data-dir {} admin create admin\n",
            data.display()
        )),
        "{log}"
    );
    assert!(node.stop().success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("master.key")), 0o600);
    }
}

#[test]
fn wrong_or_exposed_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, _, err) = cli(&["user", "add", "alice", "--data-dir", d], &[], None);
    assert!(ok, "{err}");
    let key_file = dir.path().join("master.key");
    let original = std::fs::read_to_string(&key_file).unwrap();
    // Another key.
    std::fs::write(&key_file, "mQ0V9Wm6kxbYHgM0NDl0wE7Zc4zNbu1d3Tm2G9cH8kU=\n").unwrap();
    let (ok, _, err) = cli(
        &[
            "serve",
            "--data-dir",
            d,
            "--http-listen",
            "127.0.0.1:0",
            "--radius-listen",
            "127.0.0.1:0",
        ],
        &[],
        None,
    );
    assert!(!ok);
    assert!(err.contains("does not match this database"), "{err}");
    assert!(err.contains("Start with the original key file"), "{err}");
    // The same through the environment.
    let (ok, _, err) = cli(
        &["user", "list", "--data-dir", d],
        &[(
            "TESSERA_MASTER_KEY",
            "mQ0V9Wm6kxbYHgM0NDl0wE7Zc4zNbu1d3Tm2G9cH8kU=",
        )],
        None,
    );
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
    // The right key, readable by others.
    std::fs::write(&key_file, original).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, _, err) = cli(&["user", "list", "--data-dir", d], &[], None);
        assert!(!ok);
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (ok, out, err) = cli(&["user", "list", "--data-dir", d], &[], None);
    assert!(ok, "{err}");
    assert!(out.contains("alice"));
}

#[test]
fn bad_configuration_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"nowhere\"\nport = 1\n").unwrap();
    let (ok, _, err) = cli(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("TESSERA_LOG_FORMAT", "xml")],
        None,
    );
    assert!(!ok);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(err.contains("http.listen"), "{err}");
    assert!(err.contains("unknown setting 'http.port'"), "{err}");
    assert!(err.contains("TESSERA_LOG_FORMAT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_reach_a_running_sqlite_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let node = Node::start(dir.path(), None, &[]);
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--data-dir", d]);
        let (ok, _, err) = cli(&a, &[], stdin);
        assert!(ok, "{args:?}: {err}");
    };
    run(
        &["user", "add", "bob", "--password-stdin"],
        Some("bob-password\n"),
    );
    run(
        &[
            "token", "enroll", "totp", "--user", "bob", "--secret", SEED_B32, "--qr", "none",
        ],
        None,
    );
    let http = common::http_client();
    assert_eq!(
        check(&http, &node.url, "bob", &fresh_code()).await,
        "ACCEPT"
    );
    run(
        &[
            "app", "add", "vpn", "--factor", "password", "--factor", "soft_otp",
        ],
        None,
    );
    run(&["settings", "set", "validate_application=vpn"], None);
    let started = Instant::now();
    while check(&http, &node.url, "bob", "bob-password").await != "CHALLENGE" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the change did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.log_text().contains("configuration reloaded"));
    assert!(node.stop().success());
}

/// A message accepted for delivery survives a crash: the node is killed (SIGKILL) while the
/// SMS gateway is unreachable; after a restart, with the gateway back, it is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_survives_kill_9_and_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // A port nobody listens on yet: the gateway comes up there later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, _, err) = cli(
        &[
            "user",
            "add",
            "alice",
            "--data-dir",
            d,
            "--phone",
            "+4915100000001",
        ],
        &[],
        None,
    );
    assert!(ok, "{err}");
    let file = dir.path().join("sms.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[settings]
sms_delivery = "gw"
validate_application = "sms"

[[delivery_profile]]
name = "gw"
type = "http"
method = "GET"
url = "http://127.0.0.1:{port}/sms?to={{phone}}&text={{message}}"

[[application]]
name = "sms"
factors = [{{ methods = ["sms_otp"] }}]
"#
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(
        &["apply", file.to_str().unwrap(), "--data-dir", d],
        &[],
        None,
    );
    assert!(ok, "{out}{err}");

    let node = Node::start(&data, None, &[]);
    let http = common::http_client();
    assert_eq!(check(&http, &node.url, "alice", "").await, "CHALLENGE");
    // The first attempt fails (nothing listens); the message waits for its next attempt.
    let started = Instant::now();
    loop {
        let (_, out, _) = cli(&["outbox", "--data-dir", d, "--json"], &[], None);
        let list: Value = serde_json::from_str(&out).unwrap();
        if list[0]["attempts"] == 1 && list[0]["status"] == "pending" {
            assert!(
                list[0]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("could not connect")
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(node); // SIGKILL

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let app = axum::Router::new().fallback(axum::routing::any(move |uri: axum::http::Uri| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(uri.to_string());
            "ok"
        }
    }));
    let gateway = tokio::spawn(async move { axum::serve(listener, app).await });
    let node = Node::start(&data, None, &[]);
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not sent after the restart: {}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("/sms?to=%2B4915100000001&text=Your%20code%3A%20"),
        "{got:?}"
    );
    let (_, out, _) = cli(&["outbox", "--all", "--data-dir", d, "--json"], &[], None);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["status"], "sent", "{list}");
    assert_eq!(list[0]["attempts"], 2);
    assert!(
        !out.contains("Your code"),
        "the text is never listed: {out}"
    );
    drop(node);
    gateway.abort();
}

/// `pass` in a URL (attack run, low): proxies and access logs keep URLs. Tessera writes no URL
/// into its own log at any level, and `refuse_pass_in_query` refuses such requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_in_a_url_is_never_logged_and_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let node = Node::start(
        dir.path(),
        None,
        &[("TESSERA_LOG", "trace"), ("TESSERA_METRICS_LISTEN", "off")],
    );
    let (ok, _, err) = cli(
        &["user", "add", "bob", "--password-stdin", "--data-dir", d],
        &[],
        Some("bob-password\n"),
    );
    assert!(ok, "{err}");
    let http = common::http_client();
    let get = |query: &'static str| {
        let (http, url) = (http.clone(), node.url.clone());
        async move {
            let res = http
                .get(format!("{url}/validate/check?{query}"))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    // Allowed by default (clients that still use GET), and logged nowhere.
    let (status, body) = get("user=bob&pass=secret-in-the-url-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["authentication"], "REJECT");
    let (ok, _, err) = cli(
        &[
            "settings",
            "set",
            "refuse_pass_in_query=true",
            "--data-dir",
            d,
        ],
        &[],
        None,
    );
    assert!(ok, "{err}");
    let started = Instant::now();
    loop {
        let (status, body) = get("user=bob&pass=secret-in-the-url-2").await;
        if status == 400 {
            assert_eq!(body["result"]["error"]["code"], 905, "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A POST to a URL with `pass` in it too; the body is where it belongs.
    let res = http
        .post(format!(
            "{}/validate/check?pass=secret-in-the-url-3",
            node.url
        ))
        .form(&[("user", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        check(&http, &node.url, "bob", "secret-in-the-body").await,
        "REJECT"
    );
    // Everything the node wrote, to its last line.
    let lines = node.log.clone();
    assert!(node.stop().success());
    std::thread::sleep(Duration::from_millis(300));
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("TRACE") || log.contains("DEBUG") || log.contains("INFO"));
    assert!(!log.contains("secret-in-the"), "{log}");
}
