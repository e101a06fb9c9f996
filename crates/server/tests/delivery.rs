//! Codes sent by SMS and mail end to end: a local HTTP server stands in for the SMS provider
//! (recording requests; one route answers 500 to test retries and failover), and a real SMTP
//! server (aiosmtpd) receives the mail; the tests read the code from what was delivered and
//! complete the login through /validate/check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Provider, TestServer, actor};
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::{Duration, Instant};
use tessera_core::admin::Declaration;
use tessera_core::model::Method;
use tessera_core::store::OutboxStore;

/// The six digits in a text.
fn code_in(text: &str) -> String {
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string();
    digits
}

fn form_value(body: &str, key: &str) -> String {
    form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn apply(s: &TestServer, decl: Value) {
    let decl: Declaration = serde_json::from_value(decl).unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
}

both_backends!(sms_codes_with_retries_failover_and_single_use);

async fn sms_codes_with_retries_failover_and_single_use(b: Backend) {
    let gw = Provider::start().await;
    let s = TestServer::start(b, None).await;
    s.add_user("alice", Some("alice-password")).await;
    apply(
        &s,
        json!({
            "delivery_profile": [
                {"name": "flaky", "type": "http", "url": format!("{}/fail", gw.url),
                 "body": "to={phone}&text={message}", "retries": 1},
                {"name": "gw", "type": "http", "url": format!("{}/sms?to={{phone}}", gw.url),
                 "headers": {"Authorization": "Bearer {secret}", "X-Client": "tessera"},
                 "secret": "api-key-123",
                 "body": "{\"to\":\"{phone}\",\"text\":\"{message}\"}", "body_encoding": "json",
                 "success_contains": "queued"}
            ],
            "settings": {"sms_delivery": "flaky, gw",
                         "sms_template": "Code {otp} for {username} \"quoted\""}
        }),
    )
    .await;
    s.use_app("sms", &[&[Method::Password], &[Method::SmsOtp]])
        .await;

    let (result, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let multi = &body["detail"]["multi_challenge"][0];
    assert_eq!(multi["type"], "sms", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The flaky gateway is tried twice (one retry), then the next profile takes it.
    let sent = gw.wait_for("/sms", 1).await;
    assert_eq!(gw.requests("/fail").len(), 2);
    let failed = &gw.requests("/fail")[0];
    assert_eq!(form_value(&failed.body, "to"), "+49 30 1234567");
    let req = &sent[0];
    assert_eq!(
        req.query, "to=%2B49%2030%201234567",
        "values percent-encoded in the URL"
    );
    assert_eq!(req.headers["authorization"], "Bearer api-key-123");
    assert_eq!(req.headers["x-client"], "tessera");
    assert_eq!(req.headers["content-type"], "application/json");
    let sms: Value = serde_json::from_str(&req.body).expect("valid JSON despite the quotes");
    let text = sms["text"].as_str().unwrap();
    assert!(text.ends_with("for alice \"quoted\""), "{text}");
    let code = code_in(text);

    // Wrong codes count; the right one signs in, once.
    let answer = |pass: String| {
        let (s, tx) = (&s, tx.clone());
        async move {
            s.check(&[("user", "alice"), ("pass", &pass), ("transaction_id", &tx)])
                .await
                .0
        }
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(answer(wrong.into()).await, "REJECT");
    assert_eq!(answer(code.clone()).await, "ACCEPT");
    assert_eq!(answer(code.clone()).await, "REJECT", "single use");

    // Each attempt is audited, without the code.
    let deliveries = s.audit("deliver").await;
    assert_eq!(
        deliveries.len(),
        1,
        "{deliveries:#?}\n{:#?}",
        gw.seen.lock().unwrap()
    );
    let d = &deliveries[0];
    assert_eq!(d.result, "ok");
    assert!(d.reason.contains("flaky: HTTP 500"), "{}", d.reason);
    assert!(d.reason.contains("gw: accepted (HTTP 200)"), "{}", d.reason);
    assert!(!d.reason.contains(&code), "{}", d.reason);

    // A code is spent after sent_code_max_fails wrong answers.
    let (_, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    let tx2 = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = gw.wait_for("/sms", 2).await;
    let code2 = code_in(
        serde_json::from_str::<Value>(&sent[1].body).unwrap()["text"]
            .as_str()
            .unwrap(),
    );
    let wrong = if code2 == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        let (r, _) = s
            .check(&[("user", "alice"), ("pass", wrong), ("transaction_id", &tx2)])
            .await;
        assert_eq!(r, "REJECT");
    }
    let (r, _) = s
        .check(&[
            ("user", "alice"),
            ("pass", &code2),
            ("transaction_id", &tx2),
        ])
        .await;
    assert_eq!(r, "REJECT", "spent after three wrong answers");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_fails_every_time_is_retried_then_given_up() {
    let gw = Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.add_user("alice", Some("alice-password")).await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "down", "type": "http",
                "url": format!("{}/fail?to={{phone}}&m={{message}}", gw.url), "method": "GET"}],
            "settings": {"sms_delivery": "down"}
        }),
    )
    .await;
    s.use_app("sms", &[&[Method::SmsOtp]]).await;
    // An OTP-only factor sends the code on the first request (an empty pass).
    let (result, body) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE", "{body}");
    gw.wait_for("/fail", 1).await;
    // Attempts follow the backoff on the (fake) clock: after 5 s, 15 s, 45 s and 135 s; the
    // fifth is the last.
    let engine = &s.running.as_ref().unwrap().app.engine;
    let store = s.store().as_ref();
    let deliverer = tessera_notify::Deliverer::new().unwrap();
    for (step, expected) in [(4, 1), (1, 2), (15, 3), (45, 4), (135, 5)] {
        s.advance(step);
        // The server's own worker may take the attempt first; either way it happens once.
        tessera_notify::deliver_due(engine, store, &deliverer).await;
        gw.wait_for("/fail", expected).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(gw.requests("/fail").len(), expected, "after {step} s more");
    }
    let list = store.list_outbox(false, 10).await.unwrap();
    assert_eq!(
        list[0].status,
        tessera_core::model::OutboxStatus::Failed,
        "{list:?}"
    );
    let last = s
        .audit_when("deliver", |r| r.reason.contains("given up"))
        .await
        .remove(0);
    assert!(last.reason.contains("given up"), "{}", last.reason);
    s.stop().await;
}

/// A real SMTP server: aiosmtpd, from tests/peers (scripts/test.sh installs it).
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        Self::start_with(&[])
    }

    /// Requires STARTTLS with a certificate for 127.0.0.1 from a test CA; returns the CA.
    fn start_tls() -> (SmtpSink, String, tempfile::TempDir) {
        let certs = tempfile::tempdir().unwrap();
        tessera_testkit::slapd::certificates(certs.path());
        let ca = std::fs::read_to_string(certs.path().join("ca.pem")).unwrap();
        let sink = Self::start_with(&[
            certs.path().join("server.pem").display().to_string(),
            certs.path().join("server.key").display().to_string(),
        ]);
        (sink, ca, certs)
    }

    fn start_with(extra: &[String]) -> SmtpSink {
        let base = std::env::var("TESSERA_TEST_VENVS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| common::root().join(".venv"));
        let python = base.join("smtp/bin/python");
        assert!(
            python.exists(),
            "{} is missing: the README's test command (scripts/test.sh) installs the test peers",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mail.jsonl");
        let mut child = std::process::Command::new(python)
            .arg(common::root().join("tests/peers/smtp_sink.py"))
            .arg(&file)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        SmtpSink {
            child,
            port: line.trim().parse().expect("the sink prints its port"),
            file,
            _dir: dir,
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let mails: Vec<Value> = std::fs::read_to_string(&self.file)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no mail arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_codes_through_a_real_smtp_server() {
    let smtp = SmtpSink::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "relay", "type": "smtp", "host": "127.0.0.1",
                "port": smtp.port, "tls": "none", "from": "mfa@example.org",
                "from_name": "Tessera MFA"}],
            "settings": {"mail_delivery": "relay", "mail_subject": "Code for {username}",
                         "mail_html_template": "<p>Hello {username}, your code is <b>{otp}</b></p>"}
        }),
    )
    .await;
    s.use_app("mail", &[&[Method::MailOtp]]).await;
    let (result, body) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE", "{body}");
    assert_eq!(body["detail"]["multi_challenge"][0]["type"], "email");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["from"], "mfa@example.org");
    assert_eq!(mail["to"], json!(["alice@example.org"]));
    assert_eq!(mail["subject"], "Code for alice");
    let code = code_in(mail["body"].as_str().unwrap());
    assert_eq!(
        mail["html"].as_str().unwrap().trim(),
        format!("<p>Hello alice, your code is <b>{code}</b></p>"),
        "the HTML alternative"
    );
    let (result, _) = s
        .check(&[("user", "alice"), ("pass", &code), ("transaction_id", &tx)])
        .await;
    assert_eq!(result, "ACCEPT");
    // Nothing is pending, and the outbox lists the sent message without its text.
    let all = s
        .running
        .as_ref()
        .unwrap()
        .app
        .store
        .list_outbox(true, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].sent_by.as_deref(), Some("mail:relay"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_settings_are_checked() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    let bad: Declaration = serde_json::from_value(json!({
        "delivery_profile": [{"name": "relay", "type": "smtp", "host": "mail.example.org",
                              "from": "not-an-address"}],
        "settings": {"sms_delivery": "relay, nowhere", "sms_template": "no code here"},
        "application": [{"name": "boss", "factors": [{"methods": ["approved_otp", "soft_otp"]}]}]
    }))
    .unwrap();
    let err = s
        .admin()
        .apply(&actor(), &bad, false)
        .await
        .unwrap_err()
        .to_string();
    for want in [
        "from: 'not-an-address'",
        "'relay' is an SMTP server",
        "'nowhere' does not exist",
        "sms_template",
        "approved_otp must follow a factor that proves",
        "approved_otp stands alone",
        "need the public_url setting",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius_two_rounds_with_an_sms_code_and_trigger_challenge() {
    let gw = Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    let secret = "s3cret-for-the-tests";
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "gw", "type": "http",
                "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"}],
            "settings": {"sms_delivery": "gw"},
            "application": [{"name": "vpn", "factors": [{"methods": ["password"]},
                                                        {"methods": ["sms_otp"]}]}],
            "radius_client": [{"name": "vpn", "nas_ip": ["127.0.0.1"], "secret": secret,
                               "application": "vpn"}]
        }),
    )
    .await;
    let auth = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let (ok, out) = common::radclient(
        auth,
        "auth",
        secret,
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    assert_eq!(
        common::radclient_attr(&out, "Reply-Message").as_deref(),
        Some("Please enter the code sent to your phone")
    );
    let state = common::radclient_attr(&out, "State").unwrap();
    let sms = gw.wait_for("/sms", 1).await;
    let code = code_in(&form_value(&sms[0].body, "text"));
    let (ok, out) = common::radclient(
        auth,
        "auth",
        secret,
        &format!(
            "User-Name = alice\nUser-Password = {code}\nState = {state}\nMessage-Authenticator = 0x00\n"
        ),
    );
    assert!(ok, "{out}");

    // A service account triggers the code for a client that checked the password itself.
    s.use_app("sms-only", &[&[Method::SmsOtp]]).await;
    let token = s
        .admin_token("svc", tessera_core::model::AdminRole::Service)
        .await;
    let resp: Value = s
        .http
        .post(format!("{}/validate/triggerchallenge", s.url))
        .header("PI-Authorization", token)
        .form(&[("user", "alice")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["result"]["value"], 1, "{resp}");
    assert_eq!(
        resp["detail"]["multi_challenge"][0]["type"], "sms",
        "{resp}"
    );
    gw.wait_for("/sms", 2).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_first_then_fallback_channels_and_their_errors() {
    let gw = Provider::start().await;
    let smtp = SmtpSink::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    s.admin()
        .create_user(
            &actor(),
            tessera_core::admin::NewUserInput {
                username: "nobody-reachable".into(),
                enabled: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    apply(
        &s,
        json!({
            "delivery_profile": [
                {"name": "wa", "type": "http", "url": format!("{}/fail", gw.url),
                 "body": "to={phone}&text={message}&via={channel}"},
                {"name": "sms", "type": "http", "url": format!("{}/sms", gw.url),
                 "body": "to={phone}&text={message}&via={channel}"},
                {"name": "relay", "type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                 "tls": "none", "from": "mfa@example.org"}
            ],
            "settings": {
                "mobile_sub_channel": "whatsapp",
                "whatsapp_delivery": "wa",
                "whatsapp_template": "OTP generated for whatsapp is {otp}",
                "sms_delivery": "sms",
                "sms_template": "OTP generated for sms is {otp}",
                "mail_delivery": "relay",
                "fallback_channels": "SMS, mail"
            }
        }),
    )
    .await;
    s.use_app("otp", &[&[Method::SmsOtp]]).await;

    // WhatsApp first (it fails here), then the fallback channel SMS with its own text.
    let (result, body) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let sms = gw.wait_for("/sms", 1).await;
    let wa = gw.requests("/fail");
    assert_eq!(wa.len(), 1);
    assert!(form_value(&wa[0].body, "text").starts_with("OTP generated for whatsapp is "));
    assert_eq!(form_value(&wa[0].body, "via"), "whatsapp");
    assert!(form_value(&sms[0].body, "text").starts_with("OTP generated for sms is "));
    let last = s
        .audit_when("deliver", |r| r.reason.contains("sms sms:"))
        .await
        .remove(0);
    assert!(
        last.reason.contains("whatsapp wa: HTTP 500"),
        "{}",
        last.reason
    );
    assert!(last.reason.contains("sms sms: accepted"), "{}", last.reason);

    // fallbackChannel skips the primary channel.
    let (result, _) = s
        .check(&[("user", "alice"), ("pass", ""), ("fallbackChannel", "SMS")])
        .await;
    assert_eq!(result, "CHALLENGE");
    gw.wait_for("/sms", 2).await;
    assert_eq!(gw.requests("/fail").len(), 1, "WhatsApp was not tried");
    let (result, body) = s
        .check(&[
            ("user", "alice"),
            ("pass", ""),
            ("fallbackChannel", "EMAIL"),
        ])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    assert_eq!(body["detail"]["multi_challenge"][0]["type"], "email");
    smtp.wait_for(1).await;

    // Seed 003's errors, as documented codes; nothing is sent for them.
    let error = |user: &'static str, channel: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s
                .post(
                    "/validate/check",
                    &[("user", user), ("pass", ""), ("fallbackChannel", channel)],
                )
                .await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["result"]["status"], false, "{body}");
            (
                body["result"]["error"]["code"].as_i64().unwrap(),
                body["result"]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        }
    };
    assert_eq!(
        error("nobody-reachable", "sms").await,
        (
            1601,
            "ERR1601: Fallback Channel needs identifier mobile".into()
        )
    );
    assert_eq!(
        error("nobody-reachable", "email").await,
        (
            1602,
            "ERR1602: Fallback Channel needs identifier email".into()
        )
    );
    for channel in ["zalo", "WHATSAPP", "pigeon"] {
        assert_eq!(
            error("alice", channel).await,
            (
                1603,
                "ERR1603: Channel is not configured properly, please check and try again".into()
            ),
            "{channel}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.requests("/sms").len(), 2);
    assert_eq!(smtp.wait_for(1).await.len(), 1);
    s.stop().await;
}

/// Seed 003's separate MFA channel: the first factor's code goes by SMS, the MFA step's by
/// WhatsApp with its own text (CONF_MFA_MOBILE_SUB_CHANNEL and _PROPERTIES).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mfa_step_has_its_own_channel_and_text() {
    let gw = Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    apply(
        &s,
        json!({
            "delivery_profile": [
                {"name": "wa", "type": "http", "url": format!("{}/wa", gw.url),
                 "body": "to={phone}&text={message}&via={channel}"},
                {"name": "sms", "type": "http", "url": format!("{}/sms", gw.url),
                 "body": "to={phone}&text={message}&via={channel}"}
            ],
            "settings": {
                "whatsapp_delivery": "wa",
                "whatsapp_template": "OTP generated for whatsapp is {otp}",
                "sms_delivery": "sms",
                "sms_template": "OTP generated for sms is {otp}",
                "mfa_mobile_sub_channel": "whatsapp",
                "mfa_whatsapp_template": "MFA OTP generated for whatsapp is {otp}"
            }
        }),
    )
    .await;
    // A code first, then a code in the MFA step.
    s.use_app("two-codes", &[&[Method::SmsOtp], &[Method::SmsOtp]])
        .await;
    let (result, first) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE", "{first}");
    let sms = gw.wait_for("/sms", 1).await;
    let text = form_value(&sms[0].body, "text");
    assert!(text.starts_with("OTP generated for sms is "), "{text}");
    assert!(gw.requests("/wa").is_empty());
    let tx = first["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (result, second) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &code_in(&text)),
        ])
        .await;
    assert_eq!(result, "CHALLENGE", "{second}");
    let wa = gw.wait_for("/wa", 1).await;
    let text = form_value(&wa[0].body, "text");
    assert!(
        text.starts_with("MFA OTP generated for whatsapp is "),
        "{text}"
    );
    assert_eq!(form_value(&wa[0].body, "via"), "whatsapp");
    let tx = second["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (result, body) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &code_in(&text)),
        ])
        .await;
    assert_eq!(result, "ACCEPT", "{body}");
    assert_eq!(
        gw.requests("/sms").len(),
        1,
        "the MFA code went by WhatsApp only"
    );

    // Without MFA texts of its own, the MFA step uses the first factor's; a bad MFA setting is
    // refused.
    let refused = s
        .admin()
        .update_settings(
            &actor(),
            serde_json::from_value(json!({"mfa_mobile_sub_channel": "pigeon"})).unwrap(),
        )
        .await;
    assert!(refused.is_err());
    let refused = s
        .admin()
        .update_settings(
            &actor(),
            serde_json::from_value(json!({"mfa_zalo_template": "no code here"})).unwrap(),
        )
        .await;
    assert!(refused.is_err());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_per_user_and_hour_are_limited() {
    let gw = Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.add_user("alice", Some("alice-password")).await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "gw", "type": "http",
                "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"}],
            "settings": {"sms_delivery": "gw", "sent_code_max_per_hour": 2}
        }),
    )
    .await;
    s.use_app("sms", &[&[Method::SmsOtp]]).await;
    let ask = || async { s.check(&[("user", "alice"), ("pass", "")]).await.0 };
    assert_eq!(ask().await, "CHALLENGE");
    assert_eq!(ask().await, "CHALLENGE");
    assert_eq!(ask().await, "REJECT");
    assert_eq!(
        s.audit("authenticate").await.remove(0).reason,
        "too many codes sent to the user within the hour"
    );
    gw.wait_for("/sms", 2).await;
    s.advance(3600);
    assert_eq!(ask().await, "CHALLENGE", "a new hour");
    gw.wait_for("/sms", 3).await;
    s.stop().await;
}

/// The link in a mail body.
fn link_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.contains("/link/"))
        .unwrap_or_else(|| panic!("no link in {body:?}"))
        .to_string()
}

async fn poll(s: &TestServer, tx: &str) -> Value {
    s.http
        .get(format!(
            "{}/validate/polltransaction?transaction_id={tx}",
            s.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn click(s: &TestServer, link: &str, action: &str) -> (u16, String) {
    let r = s
        .http
        .post(link)
        .form(&[("action", action)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn with_people(s: &TestServer) {
    for (name, manager) in [("alice", Some("bob")), ("bob", None), ("carol", None)] {
        s.admin()
            .create_user(
                &actor(),
                tessera_core::admin::NewUserInput {
                    username: name.into(),
                    password: Some(zeroize::Zeroizing::new(format!("{name}-password"))),
                    email: Some(format!("{name}@example.org")),
                    manager: manager.map(str::to_string),
                    enabled: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_links_for_the_user_and_for_the_manager() {
    let smtp = SmtpSink::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    with_people(&s).await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "relay", "type": "smtp", "host": "127.0.0.1",
                "port": smtp.port, "tls": "none", "from": "mfa@example.org"}],
            "settings": {"mail_delivery": "relay", "public_url": s.url}
        }),
    )
    .await;
    s.use_app("link", &[&[Method::Password], &[Method::EmailLink]])
        .await;

    // The user's own click.
    let (result, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let c = &body["detail"]["multi_challenge"][0];
    assert_eq!(
        (c["type"].as_str(), c["client_mode"].as_str()),
        (Some("email_link"), Some("poll"))
    );
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(poll(&s, &tx).await["result"]["value"], false);
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["alice@example.org"]));
    let link = link_in(mail["body"].as_str().unwrap());
    assert!(link.starts_with(&format!("{}/link/{tx}/", s.url)), "{link}");
    // Opening the link answers nothing (mail scanners open links).
    let page = s.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<strong>alice</strong>") && html.contains("Sign me in"),
        "{html}"
    );
    assert_eq!(poll(&s, &tx).await["result"]["value"], false);
    // Finalising before the click is refused, without ending the transaction.
    let finalise = |tx: String| {
        let s = &s;
        async move {
            s.check(&[("user", "alice"), ("pass", ""), ("transaction_id", &tx)])
                .await
                .0
        }
    };
    assert_eq!(finalise(tx.clone()).await, "REJECT");
    assert_eq!(
        s.audit("authenticate").await.remove(0).reason,
        "the link was not used yet"
    );
    let (status, html) = click(&s, &link, "approve").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("approved"), "{html}");
    let polled = poll(&s, &tx).await;
    assert_eq!(polled["result"]["value"], true, "{polled}");
    assert_eq!(finalise(tx.clone()).await, "ACCEPT");
    assert_eq!(click(&s, &link, "approve").await.0, 404, "single use");
    assert_eq!(finalise(tx.clone()).await, "REJECT", "finished");

    // The manager decides.
    s.set(json!({"email_link_mode": "manager"})).await;
    let (_, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(body["detail"]["multi_challenge"][0]["type"], "approval");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mail = smtp.wait_for(2).await.remove(1);
    assert_eq!(mail["to"], json!(["bob@example.org"]), "alice's manager");
    let link = link_in(mail["body"].as_str().unwrap());
    let html = s
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Approve") && html.contains("Reject"),
        "{html}"
    );
    assert_eq!(click(&s, &link, "reject").await.0, 200);
    assert_eq!(
        poll(&s, &tx).await["detail"]["challenge_status"],
        "declined"
    );
    assert_eq!(finalise(tx.clone()).await, "REJECT");
    assert_eq!(
        s.audit("authenticate").await.remove(0).reason,
        "rejected with the link"
    );
    // Forged links find nothing.
    let forged = format!("{}/link/{tx}/{}", s.url, "0".repeat(64));
    assert_eq!(s.http.get(&forged).send().await.unwrap().status(), 404);
    assert_eq!(click(&s, &forged, "approve").await.0, 404);
    let answers = s.audit("link_answer").await;
    assert_eq!(answers.len(), 4, "approve, used again, reject, forged");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_approval_and_manager_information() {
    let smtp = SmtpSink::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    with_people(&s).await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "relay", "type": "smtp", "host": "127.0.0.1",
                "port": smtp.port, "tls": "none", "from": "mfa@example.org"}],
            "settings": {"mail_delivery": "relay", "public_url": s.url,
                         "approval_default_recipient": "security@example.org"}
        }),
    )
    .await;
    s.use_app("approved", &[&[Method::Password], &[Method::ApprovedOtp]])
        .await;
    // carol has no manager: the default recipient approves.
    let (result, body) = s
        .check(&[("user", "carol"), ("pass", "carol-password")])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["security@example.org"]));
    assert_eq!(mail["subject"], "Sign-in of carol to approved");
    assert_eq!(
        click(&s, &link_in(mail["body"].as_str().unwrap()), "approve")
            .await
            .0,
        200
    );
    let (result, _) = s
        .check(&[("user", "carol"), ("pass", ""), ("transaction_id", &tx)])
        .await;
    assert_eq!(result, "ACCEPT");

    // Information mode: the manager is told, the user goes on at once.
    s.set(json!({"approval_mode": "information",
                 "approval_template": "{username} signed in to {application}."}))
        .await;
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "ACCEPT"
    );
    let mail = smtp.wait_for(2).await.remove(1);
    assert_eq!(mail["to"], json!(["bob@example.org"]));
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains("alice signed in to approved")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radius_nas_waits_for_the_link_and_answers_the_challenge_empty() {
    let smtp = SmtpSink::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    with_people(&s).await;
    let secret = "s3cret-for-the-tests";
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "relay", "type": "smtp", "host": "127.0.0.1",
                "port": smtp.port, "tls": "none", "from": "mfa@example.org"}],
            "settings": {"mail_delivery": "relay", "public_url": s.url},
            "application": [{"name": "vpn", "factors": [{"methods": ["password"]},
                                                        {"methods": ["email_link"]}]}],
            "radius_client": [{"name": "vpn", "nas_ip": ["127.0.0.1"], "secret": secret,
                               "application": "vpn"}]
        }),
    )
    .await;
    let auth = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let (ok, out) = common::radclient(
        auth,
        "auth",
        secret,
        "User-Name = alice\nUser-Password = alice-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    let state = common::radclient_attr(&out, "State").unwrap();
    let answer = |state: String| {
        common::radclient(
            auth,
            "auth",
            secret,
            &format!(
                "User-Name = alice\nUser-Password = \"\"\nState = {state}\nMessage-Authenticator = 0x00\n"
            ),
        )
    };
    // Before the click: rejected, the transaction stays.
    let (ok, out) = answer(state.clone());
    assert!(!ok && out.contains("Access-Reject"), "{out}");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(
        click(&s, &link_in(mail["body"].as_str().unwrap()), "approve")
            .await
            .0,
        200
    );
    let (ok, out) = answer(state);
    let reasons: Vec<String> = s
        .audit("authenticate")
        .await
        .into_iter()
        .map(|r| format!("{}: {}", r.result, r.reason))
        .collect();
    assert!(ok, "{out}\n{reasons:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_answers_its_own_factor_only() {
    let gw = Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_010)).await;
    // A phone, no mail address: the second factor can only be answered with the token.
    s.admin()
        .create_user(
            &actor(),
            tessera_core::admin::NewUserInput {
                username: "dora".into(),
                phone: Some("+4915100000009".into()),
                enabled: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.enroll(
        "dora",
        tessera_core::model::TokenKind::Totp,
        "TOTPDORA",
        None,
    )
    .await;
    apply(
        &s,
        json!({
            "delivery_profile": [{"name": "gw", "type": "http",
                "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"}],
            "settings": {"sms_delivery": "gw"}
        }),
    )
    .await;
    s.use_app(
        "two",
        &[&[Method::SmsOtp], &[Method::SoftOtp, Method::MailOtp]],
    )
    .await;
    let (result, body) = s.check(&[("user", "dora"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sms = gw.wait_for("/sms", 1).await;
    let code = code_in(&form_value(&sms[0].body, "text"));
    let answer = |pass: String| {
        let (s, tx) = (&s, tx.clone());
        async move {
            s.check(&[("user", "dora"), ("pass", &pass), ("transaction_id", &tx)])
                .await
        }
    };
    let (result, body) = answer(code.clone()).await;
    assert_eq!(result, "CHALLENGE", "{body}");
    assert_eq!(
        body["detail"]["multi_challenge"][0]["type"], "totp",
        "{body}"
    );
    assert_eq!(
        answer(code).await.0,
        "REJECT",
        "the SMS code does not answer factor 2"
    );
    assert_eq!(answer(s.totp(0)).await.0, "ACCEPT");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_over_starttls_with_a_pinned_ca() {
    let (smtp, ca, _certs) = SmtpSink::start_tls();
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("alice", Some("alice-password")).await;
    let profile = |ca: &str| {
        json!({"name": "relay", "type": "smtp", "host": "127.0.0.1", "port": smtp.port,
               "tls": "starttls", "ca_pem": ca, "from": "mfa@example.org"})
    };
    apply(
        &s,
        json!({"delivery_profile": [profile(&ca)], "settings": {"mail_delivery": "relay"}}),
    )
    .await;
    s.use_app("mail", &[&[Method::MailOtp]]).await;
    let (result, _) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["alice@example.org"]));
    code_in(mail["body"].as_str().unwrap());

    // A CA that did not sign the server's certificate: not delivered, and the audit says why.
    let other = tempfile::tempdir().unwrap();
    tessera_testkit::slapd::certificates(other.path());
    let wrong = std::fs::read_to_string(other.path().join("ca.pem")).unwrap();
    apply(&s, json!({"delivery_profile": [profile(&wrong)]})).await;
    let (result, _) = s.check(&[("user", "alice"), ("pass", "")]).await;
    assert_eq!(result, "CHALLENGE");
    let started = Instant::now();
    let attempt = loop {
        let got = s.audit("deliver").await;
        if got.len() >= 2 {
            break got[0].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(attempt.result, "error", "{}", attempt.reason);
    assert!(
        attempt.reason.contains("mail relay: SMTP"),
        "{}",
        attempt.reason
    );
    assert_eq!(
        smtp.wait_for(1).await.len(),
        1,
        "nothing delivered without trust"
    );
    s.stop().await;
}
