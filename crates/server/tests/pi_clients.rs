//! Real privacyIDEA/eduMFA clients against Tessera, unchanged: privacyIDEA's and eduMFA's own
//! validate-API client classes and the Django login backend for privacyIDEA (PyPI packages,
//! installed into `.venv/{pi,edu,dj}` by scripts/test.sh; tests/peers/pi_clients.py drives them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer};
use serde_json::{Value, json};
use tessera_core::model::{Method, TokenKind};

/// Runs one client over the steps and returns its per-step results.
fn peer(client: &str, venv: &str, url: &str, steps: Value) -> Vec<Value> {
    common::python_peer(
        venv,
        "pi_clients.py",
        &[client.to_string(), url.to_string()],
        &steps,
    )
}

async fn setup() -> TestServer {
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_010)).await;
    for user in ["alice", "bob", "carol"] {
        s.add_user(user, Some(&format!("{user}-password"))).await;
    }
    // PINs with characters that need quoting: the clients quote them twice.
    s.enroll("alice", TokenKind::Hotp, "OATHALICE", Some("pin 12&34%"))
        .await;
    s.enroll("bob", TokenKind::Hotp, "OATHBOB", Some("b0b+pin"))
        .await;
    s.enroll("carol", TokenKind::Hotp, "OATHCAROL", None).await;
    s
}

async fn pi_like(client: &str, venv: &str, user: &str, pin: &str) {
    let s = setup().await;
    let pass = |c: u64| format!("{pin}{}", s.hotp(c));
    let out = peer(
        client,
        venv,
        &s.url,
        json!([
            {"call": "request", "user": user, "pass": pass(0)},
            {"call": "request", "user": user, "pass": pass(0)},
            {"call": "request", "user": user, "pass": format!("wrong{}", s.hotp(1))},
            {"call": "request", "user": "nobody", "pass": "123456"},
            {"call": "validate_check", "user": user, "pass": pass(1)},
            {"call": "validate_check", "user": user, "pass": pass(2), "realm": "default"},
        ]),
    );
    assert_eq!(out[0]["verdict"], true, "{out:?}");
    assert_eq!(out[1]["verdict"], false, "replayed OTP");
    assert_eq!(out[2]["verdict"], false, "wrong PIN");
    assert_eq!(out[3]["verdict"], false, "unknown user");
    assert_eq!(out[4]["status"], 200);
    assert_eq!(out[4]["body"]["result"]["authentication"], "ACCEPT");
    assert_eq!(out[4]["body"]["detail"]["type"], "hotp");
    assert_eq!(out[5]["body"]["result"]["value"], true);

    // Two legs: password, then the OTP with the transaction id of the challenge.
    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let out = peer(
        client,
        venv,
        &s.url,
        json!([
            {"call": "validate_check", "user": user, "pass": format!("{user}-password")},
            {"call": "validate_check", "user": user, "pass": s.hotp(3), "answer": 0},
            {"call": "validate_check", "user": user, "pass": "not-the-password"},
        ]),
    );
    assert_eq!(
        out[0]["body"]["result"]["authentication"], "CHALLENGE",
        "{out:?}"
    );
    assert_eq!(
        out[0]["body"]["detail"]["multi_challenge"][0]["client_mode"],
        "interactive"
    );
    assert_eq!(
        out[1]["body"]["result"]["authentication"], "ACCEPT",
        "{out:?}"
    );
    assert_eq!(out[2]["body"]["result"]["authentication"], "REJECT");
    // The audit names the client.
    let audit = s.audit("authenticate").await;
    assert!(audit.iter().all(|r| {
        r.user_agent
            .as_deref()
            .unwrap_or("")
            .starts_with("python-requests/")
    }));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacyidea_client_class() {
    pi_like("pi", "pi", "alice", "pin 12&34%").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edumfa_client_class() {
    pi_like("edu", "edu", "bob", "b0b+pin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_login_backend_reads_samlcheck_attributes() {
    let s = setup().await;
    let out = peer(
        "django",
        "dj",
        &s.url,
        json!([
            {"call": "authenticate", "user": "carol", "pass": s.hotp(0)},
            {"call": "authenticate", "user": "carol", "pass": s.hotp(0)},
            {"call": "authenticate", "user": "nobody", "pass": "123456"},
        ]),
    );
    assert_eq!(
        out[0]["user"],
        json!({"username": "carol", "email": "carol@example.org", "first_name": "Given", "last_name": "Sur"})
    );
    assert_eq!(out[1]["user"], Value::Null, "replayed OTP");
    assert_eq!(out[2]["user"], Value::Null);
    s.stop().await;
}
