//! The end-to-end harness: a real server on port 0 with a temporary database (SQLite or a
//! throwaway PostgreSQL database), driven over HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_core::admin::{Actor, Admin, EnrollInput, NewUserInput};
use tessera_core::clock::{Clock, FakeClock, SystemClock};
use tessera_core::model::{Application, Factor, Method, TokenKind};
use tessera_server::config::{Config, Overrides};
use tessera_server::serve::{self, Running};
use tessera_testkit::PgDatabase;
use zeroize::Zeroizing;

pub const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub running: Option<Running>,
    pub url: String,
    pub http: reqwest::Client,
    pub clock: Option<FakeClock>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
}

pub fn actor() -> Actor {
    Actor {
        name: "test".into(),
        door: "cli".into(),
        client_ip: None,
    }
}

impl TestServer {
    /// A server with a fake clock starting at `start` (Unix seconds), or the system clock.
    pub async fn start(backend: Backend, start: Option<i64>) -> TestServer {
        Self::start_configured(backend, start, |_| {}).await
    }

    /// Like `start`, with the process configuration adjusted first.
    pub async fn start_configured(
        backend: Backend,
        start: Option<i64>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        let overrides = Overrides {
            data_dir: Some(dir.path().join("data").display().to_string()),
            database_url: pg.as_ref().map(|p| p.url.clone()),
            http_listen: Some("127.0.0.1:0".into()),
            radius_listen: Some("127.0.0.1:0".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let mut config = Config::load_from(&overrides, &BTreeMap::new()).unwrap();
        adjust(&mut config);
        let clock = start.map(FakeClock::at);
        let dyn_clock: Arc<dyn Clock> = match &clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let running = serve::start(&config, dyn_clock).await.unwrap();
        let url = format!("http://{}", running.http_addr);
        let server = TestServer {
            running: Some(running),
            url,
            http: http_client(),
            clock,
            config,
            dir,
            pg,
        };
        // Cheap hashes keep the tests fast; the cost is a setting.
        server
            .admin()
            .update_settings(
                &actor(),
                serde_json::from_value(json!({"argon2_memory_kib": 8192, "argon2_iterations": 1}))
                    .unwrap(),
            )
            .await
            .unwrap();
        server
    }

    pub fn admin(&self) -> &Admin {
        &self.running.as_ref().unwrap().app.admin
    }

    /// The server's store (what another node or the CLI would change behind its back).
    pub fn store(&self) -> &std::sync::Arc<tessera_store::SqlStore> {
        &self.running.as_ref().unwrap().app.store
    }

    pub fn now(&self) -> i64 {
        match &self.clock {
            Some(c) => c.now(),
            None => SystemClock.now(),
        }
    }

    pub fn advance(&self, secs: i64) {
        self.clock.as_ref().expect("fake clock").advance(secs);
    }

    /// Stops the server and keeps its data, for another server started on it
    /// (`start_configured` with this one's `config`).
    pub async fn halt(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }

    pub async fn set(&self, settings: Value) {
        self.admin()
            .update_settings(&actor(), serde_json::from_value(settings).unwrap())
            .await
            .unwrap();
    }

    pub async fn add_user(&self, name: &str, password: Option<&str>) {
        self.admin()
            .create_user(
                &actor(),
                NewUserInput {
                    username: name.into(),
                    password: password.map(|p| Zeroizing::new(p.to_string())),
                    email: Some(format!("{name}@example.org")),
                    given_name: Some("Given".into()),
                    surname: Some("Sur".into()),
                    phone: Some("+49 30 1234567".into()),
                    groups: vec!["staff".into()],
                    enabled: true,
                    ..NewUserInput::default()
                },
            )
            .await
            .unwrap();
    }

    /// Enrolls a token with a known seed; returns its serial.
    pub async fn enroll(
        &self,
        user: &str,
        kind: TokenKind,
        serial: &str,
        pin: Option<&str>,
    ) -> String {
        self.admin()
            .enroll(
                &actor(),
                EnrollInput {
                    kind,
                    user: user.into(),
                    realm: None,
                    secret: Some(Zeroizing::new(SEED_B32.into())),
                    secret_hex: None,
                    pin: pin.map(|p| Zeroizing::new(p.into())),
                    digits: None,
                    algorithm: None,
                    period: None,
                    counter: None,
                    description: None,
                    serial: Some(serial.into()),
                },
            )
            .await
            .unwrap()
            .token
            .serial
    }

    /// Makes `name` the validate application with the given factor chain.
    pub async fn use_app(&self, name: &str, factors: &[&[Method]]) {
        let app = Application {
            name: name.into(),
            kind: Default::default(),
            description: String::new(),
            factors: factors.iter().map(|m| Factor::of(m.to_vec())).collect(),
            routes: Vec::new(),
            sso_session_minutes: None,
            sso_idle_minutes: None,
            branding: None,
            realms: Vec::new(),
            require_client_token: false,
            challenge_response: false,
            pass_on_no_token: false,
            passthru: false,
            pass_on_no_user: false,
        };
        self.admin().put(&actor(), app).await.unwrap();
        self.set(json!({"validate_application": name})).await;
    }

    /// The TOTP code of the test seed at the server's time, from oathtool.
    pub fn totp(&self, offset_steps: i64) -> String {
        tessera_testkit::oathtool_totp(SEED_B32, self.now() + offset_steps * 30, 6, 30, "sha1")
    }

    pub fn hotp(&self, counter: u64) -> String {
        tessera_testkit::oathtool_hotp(SEED_B32, counter, 6)
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `/validate/check`, returning `result.authentication` and the whole body.
    pub async fn check(&self, form: &[(&str, &str)]) -> (String, Value) {
        let (status, body) = self.post("/validate/check", form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let auth = body["result"]["authentication"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (auth, body)
    }

    pub async fn admin_token(&self, name: &str, role: tessera_core::model::AdminRole) -> String {
        let password = "a-long-admin-password";
        self.admin()
            .create_admin(&actor(), name, password, role)
            .await
            .unwrap();
        let (status, body) = self
            .post("/auth", &[("username", name), ("password", password)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"]["value"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The audit records of an action, newest first.
    pub async fn audit(&self, action: &str) -> Vec<tessera_core::model::AuditRecord> {
        use tessera_core::store::AuditStore;
        self.store()
            .query_audit(&tessera_core::model::AuditQuery {
                action: Some(action.into()),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

impl TestServer {
    /// The audit records of `action` once one satisfies `ready` (records are written after the
    /// work they describe, which a test may see first); waits up to 5 s.
    pub async fn audit_when(
        &self,
        action: &str,
        ready: impl Fn(&tessera_core::model::AuditRecord) -> bool,
    ) -> Vec<tessera_core::model::AuditRecord> {
        for _ in 0..50 {
            let records = self.audit(action).await;
            if records.iter().any(&ready) {
                return records;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.audit(action).await
    }
}

/// Runs the `tessera` binary on the server's data (the CLI beside a running server).
pub fn tessera(s: &TestServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .arg("--data-dir")
        .arg(&s.config.data_dir)
        .arg("--database-url")
        .arg(&s.config.database_url)
        .output()
        .unwrap()
}

/// The same, with `stdin` on standard input.
pub fn tessera_stdin(s: &TestServer, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .arg("--data-dir")
        .arg(&s.config.data_dir)
        .arg("--database-url")
        .arg(&s.config.database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A `--json` command's outcome: exit status 0, what it printed (JSON, or null), its errors.
pub fn json_outcome(out: std::process::Output) -> (bool, Value, String) {
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The same, which must succeed.
pub fn tessera_ok(s: &TestServer, args: &[&str]) -> std::process::Output {
    let out = tessera(s, args);
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of a form's hidden input `name` in a page (as the page writes it).
pub fn hidden_input(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    unescape(
        page.split(marker.as_str())
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no hidden input {name} in {page}")),
    )
}

/// An attribute value as the page's template escaped it, read back.
pub fn unescape(value: &str) -> String {
    value
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Runs an async test body on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// The repository's root directory.
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a Python test peer (`tests/peers/SCRIPT` in the venv `.venv/VENV`, which
/// scripts/test.sh installs) with `steps` as JSON on stdin; returns its JSON list of results.
pub fn python_peer(venv: &str, script: &str, args: &[String], steps: &Value) -> Vec<Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let base = std::env::var("TESSERA_TEST_VENVS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv"));
    let python = base.join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: the README's test command (scripts/test.sh) installs the test peers",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(root().join("tests/peers").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(steps.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} ({args:?}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs pyrad over the steps (see tests/peers/radius_peer.py).
pub fn pyrad(auth: std::net::SocketAddr, acct: std::net::SocketAddr, steps: Value) -> Vec<Value> {
    let args = [
        auth.ip().to_string(),
        auth.port().to_string(),
        acct.port().to_string(),
    ];
    python_peer("radius", "radius_peer.py", &args, &steps)
}

/// Runs `radclient` with the attribute list on stdin; returns (exit status 0, stdout+stderr).
/// radclient exits 0 only for Access-Accept (and Accounting-Response).
pub fn radclient(
    addr: std::net::SocketAddr,
    kind: &str,
    secret: &str,
    attrs: &str,
) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "2"])
        .arg(addr.to_string())
        .args([kind, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("radclient (Debian package freeradius-utils; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The value of `name` in radclient's printout of a reply.
pub fn radclient_attr(out: &str, name: &str) -> Option<String> {
    let received = out.find("Received")?;
    out[received..].lines().find_map(|l| {
        let (k, v) = l.trim().split_once(" = ")?;
        (k == name).then(|| v.trim_matches('"').to_string())
    })
}

/// An HTTP client for the tests (reqwest's TLS needs a process-wide provider: ring, as the
/// server installs it).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// What the stand-in provider received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

/// An HTTP server on a loopback port: `/fail` answers 500, `/flaky` 500 the first time and 200
/// after, `/refuse` 400, anything else 200 `{"status":"queued"}`.
pub struct Provider {
    pub url: String,
    pub seen: Arc<std::sync::Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    pub async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener)
    }

    pub fn on(listener: tokio::net::TcpListener) -> Provider {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let app = axum::Router::new().fallback(axum::routing::any(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers,
                        body,
                    });
                    let tries = sink
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|r| r.path == uri.path())
                        .count();
                    if uri.path() == "/refuse" {
                        (axum::http::StatusCode::BAD_REQUEST, "no".to_string())
                    } else if uri.path() == "/fail" || (uri.path() == "/flaky" && tries == 1) {
                        (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "boom".to_string(),
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            r#"{"status":"queued"}"#.to_string(),
                        )
                    }
                }
            },
        ));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Provider { url, seen, task }
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `n` requests reached `path`.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let started = std::time::Instant::now();
        loop {
            let got = self.requests(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{n} request(s) to {path} expected, got {:?}",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The admin REST API as an administrator calls it: status and JSON (or the text).
pub struct Api<'a> {
    pub s: &'a TestServer,
    pub token: String,
}

impl Api<'_> {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut req = self
            .s
            .http
            .request(method, format!("{}/api/v1{path}", self.s.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (reqwest::StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// A browser without a cookie store: each step's cookies are given by hand.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    lang: &'static str,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str, lang: &'static str) -> Browser {
        let _ = http_client();
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            lang,
            cookies: Default::default(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET, following redirects; the final status, address and page.
    pub async fn get(&mut self, path: &str) -> (u16, String, String) {
        let mut path = path.to_string();
        loop {
            let r = self
                .http
                .get(format!("{}{path}", self.base))
                .header("accept-language", self.lang)
                .header("cookie", self.cookie_header())
                .send()
                .await
                .unwrap();
            self.keep(&r);
            if r.status() == 303 {
                path = r.headers()["location"].to_str().unwrap().to_string();
                continue;
            }
            return (r.status().as_u16(), path, r.text().await.unwrap());
        }
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("accept-language", self.lang)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        if r.status() == 303 {
            let to = r.headers()["location"].to_str().unwrap().to_string();
            return self.get(&to).await;
        }
        (
            r.status().as_u16(),
            path.to_string(),
            r.text().await.unwrap(),
        )
    }
}
