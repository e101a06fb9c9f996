//! What a new administrator meets in the first ten minutes, met the way they meet it: the
//! README's commands on a real terminal (tmux), the server's start-up and its log written to a
//! file, every command's `--help`, and the first sign-in in Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// `tessera serve` as the README starts it (ports picked by the OS), in `dir`, its standard
/// error written to `dir/serve.log`.
struct Served {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Served {
    fn start(dir: &Path, extra: &[&str]) -> Served {
        let log = dir.join("serve.log");
        let child = Command::new(BIN)
            .current_dir(dir)
            .args(["serve", "--http-listen", "127.0.0.1:0"])
            .args(["--radius-listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .args(extra)
            .env_remove("TESSERA_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Served {
            child,
            url: String::new(),
            log,
        };
        let started = Instant::now();
        loop {
            let text = served.log_text();
            // The text banner, or the JSON event (its "http" field).
            let addr = text
                .split("is listening on http://")
                .nth(1)
                .or_else(|| text.split("\"http\":\"").nth(1))
                .and_then(|rest| rest.split(['\n', '"']).next());
            if let Some(addr) = addr.filter(|_| text.contains("No administrator exists yet")) {
                served.url = format!("http://{addr}");
                return served;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A terminal: a tmux session of its own (own server socket) running one command line.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn run(dir: &Path, line: &str) -> Terminal {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Terminal {
            socket: format!("tessera-test-{}-{n}", std::process::id()),
        };
        let shell = format!("{line}; echo \"EXIT:$?\"; sleep 600");
        let ok = t
            .tmux()
            .args(["new-session", "-d", "-x", "200", "-y", "50", "-c"])
            .arg(dir)
            .arg(shell)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux did not start (scripts/test.sh installs it)");
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// What the terminal shows, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text` `times` times in all.
    fn wait_for_n(&self, text: &str, times: usize) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the terminal never showed {text:?} ({times}×):\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_for_n(text, 1)
    }

    /// Types a line as a person does, and Enter.
    fn type_line(&self, text: &str) {
        assert!(
            self.tmux()
                .args(["send-keys", "-l", text])
                .status()
                .unwrap()
                .success()
        );
        assert!(
            self.tmux()
                .args(["send-keys", "Enter"])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// Runs `tessera ARGS` in `dir` with no terminal (standard input empty).
fn tessera_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The base32 seed in an enrolment's output (its otpauth:// URI).
fn seed_in(output: &str) -> String {
    let uri = output
        .split_whitespace()
        .find(|w| w.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI in {output}"));
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every command with its path (`[]` for `tessera` itself), global options included.
fn commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut root = tessera_server::cli::command();
    // Building hands the global options down to every command.
    root.build();
    let mut out = Vec::new();
    walk(&root, Vec::new(), &mut out);
    out
}

#[test]
fn every_option_of_every_command_has_a_help_line() {
    let all = commands();
    assert!(all.len() > 60, "{} commands", all.len());
    let mut missing = Vec::new();
    for (path, cmd) in &all {
        let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
        assert!(out.status.success(), "tessera {path:?} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        // The options every command takes stand apart from the command's own.
        if !path.is_empty() {
            let (own, global) = help.split_once("\nGlobal options:\n").unwrap_or_else(|| {
                panic!(
                    "tessera {} --help has no global options heading:\n{help}",
                    path.join(" ")
                )
            });
            assert!(
                global.contains("--data-dir") && !own.contains("--data-dir"),
                "{help}"
            );
        }
        if cmd.get_about().is_none() {
            missing.push(format!("tessera {} (the command itself)", path.join(" ")));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                let name = arg
                    .get_long()
                    .map(|l| format!("--{l}"))
                    .unwrap_or_else(|| format!("<{}>", arg.get_id()));
                assert!(
                    arg.get_long().is_none() || help.contains(&name),
                    "{name} is not in `tessera {} --help`",
                    path.join(" ")
                );
                missing.push(format!("tessera {} {name}", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} without help:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// `serve` prints no tables, so it does not offer `--json`; given anyway, it is refused with
/// what to use instead.
#[test]
fn serve_offers_no_json_flag_and_refuses_it() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(!help.contains("--json"), "{help}");
    assert!(help.contains("--log-format"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--log-format json"), "{err}");
    assert!(
        !dir.path().join("tessera.db").exists(),
        "nothing was created"
    );
    // Elsewhere --json goes before or after the command.
    let user_list = Command::new(BIN)
        .args(["user", "list", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(user_list.stdout).unwrap().trim(), "[]");
}

/// The README's first steps, as a new administrator takes them: the server started in one
/// terminal with its log going to a file, then in another terminal the command its start-up
/// message names (the password asked for and not shown), a user and a token, a first sign-in
/// through the validate API, a PIN set at a prompt, and first sign-ins on the pages in
/// Chromium, in English and Turkish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_steps_on_a_terminal_and_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &[]);
    let log = served.log_text();
    // A log written to a file has no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in the log file:\n{log}"
    );
    // The start-up message names a command that runs from here (this binary is not on the
    // PATH), and says what the empty public_url setting means.
    let create = log
        .lines()
        .skip_while(|l| !l.starts_with("No administrator exists yet"))
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(create, format!("{BIN} admin create admin"), "{log}");
    assert!(
        log.contains(&format!(
            "The public_url setting is empty: OpenID Connect, SAML and links by mail use {}",
            served.url
        )),
        "{log}"
    );

    // The first administrator, with the command as printed: the password is asked for twice
    // and never shown; a mismatch asks again.
    let term = Terminal::run(dir.path(), &create);
    term.wait_for("New password (not shown as you type): ");
    term.type_line("first-Admin-pass");
    term.wait_for("Type the new password again: ");
    term.type_line("first-Admin-typo");
    term.wait_for("The two did not match. Try again.");
    term.wait_for_n("New password (not shown as you type): ", 2);
    term.type_line("first-Admin-pass");
    term.wait_for_n("Type the new password again: ", 2);
    term.type_line("first-Admin-pass");
    let screen = term.wait_for("EXIT:");
    assert!(screen.contains("EXIT:0"), "{screen}");
    assert!(
        !screen.contains("first-Admin"),
        "the password was shown:\n{screen}"
    );
    let http = common::http_client();
    let signed_in = http
        .post(format!("{}/auth", served.url))
        .form(&[("username", "admin"), ("password", "first-Admin-pass")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in.status(),
        200,
        "the password typed at the prompt was kept"
    );

    // Without a terminal, a missing password is an error that says what to give.
    let (ok, _, err) = tessera_in(dir.path(), &["admin", "create", "second"]);
    assert!(!ok);
    assert!(err.contains("--password-stdin"), "{err}");

    // A user and a token, as the README does them; the first sign-in with the code alone (the
    // default application asks for the token PIN, and this token has none).
    let mut seeds = std::collections::HashMap::new();
    for user in ["alice", "bob", "carol"] {
        let (ok, _, err) = tessera_in(dir.path(), &["user", "add", user]);
        assert!(ok, "{err}");
        let (ok, out, err) = tessera_in(dir.path(), &["token", "enroll", "totp", "--user", user]);
        assert!(ok, "{err}");
        assert!(
            out.contains('█') || out.contains('▀'),
            "a QR code to scan:\n{out}"
        );
        // "Enrolled totp token SERIAL for USER."
        let serial = out
            .split_whitespace()
            .skip_while(|w| *w != "token")
            .nth(1)
            .unwrap_or_else(|| panic!("no serial in {out}"))
            .to_string();
        seeds.insert(user, (seed_in(&out), serial));
    }
    let code = tessera_testkit::oathtool_totp(&seeds["alice"].0, now(), 6, 30, "SHA1");
    let checked: Value = http
        .post(format!("{}/validate/check", served.url))
        .form(&[("user", "alice"), ("pass", code.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(checked["result"]["value"], true, "{checked}");

    // A PIN for carol's token, typed at the prompt (twice, not shown).
    let term = Terminal::run(
        dir.path(),
        &format!("{BIN} token pin {} --pin-stdin", seeds["carol"].1),
    );
    term.wait_for("Token PIN (not shown as you type): ");
    term.type_line("4321");
    term.wait_for("Type the token PIN again: ");
    term.type_line("4321");
    let screen = term.wait_for("EXIT:");
    assert!(
        screen.contains("EXIT:0") && !screen.contains("4321"),
        "{screen}"
    );

    // The pages: the home page, its link to the account, the login page's words for this
    // application (a PIN and a code), and the user's sessions; English and Turkish.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/first-run");
    let _ = std::fs::remove_dir_all(&shots);
    let seen = common::python_peer(
        "browser",
        "first_run_peer.py",
        &[served.url.clone(), shots.display().to_string()],
        &json!([
            {"lang": "en", "username": "bob", "pin": "", "totp_seed_b32": seeds["bob"].0},
            {"lang": "tr", "username": "carol", "pin": "4321", "totp_seed_b32": seeds["carol"].0},
        ]),
    );
    let expect = [
        (
            "bob",
            ["Sign-in service", "Your account", "Your sessions"],
            "PIN and code",
            "Your PIN, if you have one, then the code",
        ),
        (
            "carol",
            ["Oturum açma hizmeti", "Hesabınız", "Oturumlarınız"],
            "PIN ve kod",
            "Varsa PIN'iniz",
        ),
    ];
    for (run, (user, headings, label, hint)) in seen.iter().zip(expect) {
        let pages = run["pages"].as_array().unwrap();
        let shown: Vec<&str> = pages
            .iter()
            .map(|p| p["heading"].as_str().unwrap())
            .collect();
        assert_eq!(shown, headings, "{run}");
        assert_eq!(pages[1]["label"], label, "{run}");
        assert!(
            pages[1]["hint"].as_str().unwrap().starts_with(hint),
            "{run}"
        );
        assert!(
            run["final_url"]
                .as_str()
                .unwrap()
                .ends_with("/login/sessions"),
            "{run}"
        );
        assert_eq!(run["user_shown"], user, "{run}");
        // Nothing about the configuration on the home page: no application, no version.
        let home = pages[0]["texts"].to_string();
        assert!(
            !home.contains("default") && !home.contains(env!("CARGO_PKG_VERSION")),
            "{home}"
        );
        for p in pages {
            let png = std::fs::read(p["screenshot"].as_str().unwrap()).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "a screenshot");
        }
    }
    // The sign-ins are audited as web sign-ins of the default application.
    let (ok, out, _) = tessera_in(
        dir.path(),
        &[
            "audit",
            "--action",
            "authenticate",
            "--result",
            "accept",
            "--json",
        ],
    );
    assert!(ok);
    let records: Value = serde_json::from_str(&out).unwrap();
    let users: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["user"].as_str())
        .collect();
    for user in ["alice", "bob", "carol"] {
        assert!(users.contains(&user), "{user} in {records}");
    }
    // Still no colour codes, after every request.
    assert!(!served.log_text().contains('\u{1b}'));
}

/// `--log-format json` writes only JSON lines to standard error (for log shippers): the
/// start-up advice comes as events too.
#[test]
fn the_json_log_is_json_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &["--log-format", "json"]);
    let log = served.log_text();
    let mut messages = Vec::new();
    for line in log.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}"));
        messages.push(
            event["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(messages.iter().any(|m| m == "tessera is serving"), "{log}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("No administrator exists yet")),
        "{log}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("The public_url setting is empty")),
        "{log}"
    );
}

/// The text of an element with this id (or attribute text), for asserts on pages.
fn text_after(page: &str, marker: &str) -> String {
    page.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .map(|(_, rest)| rest.split('<').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// `/login` opened directly: the words of the first page follow the account application's
/// first factor; a wrong answer says what was wrong in those words; a signed-in browser goes
/// to its sessions; with the setting empty the page says where sign-ins start; a setting
/// naming no application is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_sign_in_asks_in_the_words_of_its_factor() {
    use tessera_core::model::Method;
    let s = common::TestServer::start(common::Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-Password-1")).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTPFR01",
        None,
    )
    .await;
    let cases: [(&str, &[Method], &str, &str, &str); 4] = [
        (
            "pw",
            &[Method::Password],
            "Password",
            "",
            "Wrong user name or password.",
        ),
        (
            "pwotp",
            &[Method::PasswordOtp],
            "Password and code",
            "Your password, then the code",
            "Wrong user name, PIN or code.",
        ),
        (
            "either",
            &[Method::Password, Method::SoftOtp],
            "Password, or PIN and code",
            "",
            "Wrong user name, PIN or code.",
        ),
        (
            "otp",
            &[Method::SoftOtp],
            "PIN and code",
            "Your PIN, if you have one, then the code",
            "Wrong user name, PIN or code.",
        ),
    ];
    for (app, methods, label, hint, wrong) in cases {
        s.use_app(app, &[methods]).await;
        s.set(json!({"account_application": app})).await;
        let mut b = common::Browser::new(&s.url, "en");
        let (status, at, page) = b.get("/login").await;
        assert_eq!((status, at.as_str()), (200, "/login"), "{page}");
        assert_eq!(text_after(&page, "<h1"), "Your account");
        assert_eq!(
            text_after(&page, "<label for=\"answer\""),
            label,
            "{app}: {page}"
        );
        assert!(
            text_after(&page, "id=\"answer-hint\"").starts_with(hint),
            "{app}: {page}"
        );
        assert_eq!(
            page.contains("answer-hint"),
            !hint.is_empty(),
            "{app}: {page}"
        );
        let csrf = common::hidden_input(&page, "csrf");
        let (_, _, page) = b
            .post(
                "/login",
                &[("csrf", &csrf), ("username", "alice"), ("answer", "nope")],
            )
            .await;
        assert_eq!(text_after(&page, "class=\"error\""), wrong, "{app}: {page}");
    }
    // The code after the PIN (prepend_pin off): the hint says so, in Turkish too.
    s.set(json!({"prepend_pin": false})).await;
    let (_, _, page) = common::Browser::new(&s.url, "tr").get("/login").await;
    assert_eq!(text_after(&page, "<h1"), "Hesabınız");
    assert_eq!(text_after(&page, "<label for=\"answer\""), "PIN ve kod");
    assert!(
        text_after(&page, "id=\"answer-hint\"")
            .starts_with("Doğrulama uygulamanızın gösterdiği kod"),
        "{page}"
    );
    s.set(json!({"prepend_pin": true})).await;

    // A sign-in ends on the user's sessions; /login again goes straight there.
    let mut b = common::Browser::new(&s.url, "en");
    let (_, _, page) = b.get("/login").await;
    let csrf = common::hidden_input(&page, "csrf");
    let code = s.totp(0);
    let (status, at, page) = b
        .post(
            "/login",
            &[("csrf", &csrf), ("username", "alice"), ("answer", &code)],
        )
        .await;
    assert_eq!((status, at.as_str()), (200, "/login/sessions"), "{page}");
    assert_eq!(text_after(&page, "id=\"user\""), "alice");
    let (status, at, _) = b.get("/login").await;
    assert_eq!((status, at.as_str()), (200, "/login/sessions"));
    let accepted = s.audit("authenticate").await;
    assert!(
        accepted
            .iter()
            .any(|r| r.result == "accept" && r.door == "web" && r.user.as_deref() == Some("alice")),
        "{accepted:?}"
    );

    // A client that keeps no cookies gets the page, not a circle of redirects.
    let r = common::http_client()
        .get(format!("{}/login", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"username\""));

    // Turned off: /login opened directly says where sign-ins start, and keeps nothing.
    s.set(json!({"account_application": ""})).await;
    let r = common::http_client()
        .get(format!("{}/login", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let page = r.text().await.unwrap();
    assert!(
        page.contains("To use an application, open it") && !page.contains("id=\"account\""),
        "{page}"
    );

    // A setting naming no application is refused, and nothing changes.
    let refused = s
        .admin()
        .update_settings(
            &common::actor(),
            serde_json::from_value(json!({"account_application": "nowhere"})).unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("account_application") && refused.contains("nowhere"),
        "{refused}"
    );
    assert_eq!(s.admin().settings().account_application, "");
    s.stop().await;
}

/// A relying party's refused authorization request is logged with its reason (its
/// administrator reads the server's log; the browser only sees a short page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authorization_requests_are_logged_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &[]);
    let r = common::http_client()
        .get(format!(
            "{}/oidc/authorize?response_type=code&client_id=gitlab-typo&redirect_uri=https%3A%2F%2Fgitlab.example.org%2Fcb&scope=openid",
            served.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let started = Instant::now();
    loop {
        let log = served.log_text();
        if log.contains("authorization request refused") {
            assert!(
                log.contains("client_id=gitlab-typo")
                    && log.contains("no OpenID Connect client has this client_id"),
                "{log}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not logged:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
