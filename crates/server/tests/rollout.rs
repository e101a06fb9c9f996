//! privacyIDEA's rollout policies, per application: `pass_on_no_token` and `passthru` let users
//! who have no token yet in while a population enrols, each pass audited; a user who has a
//! token (in any state) never benefits, whatever the request says. Through privacyIDEA's own
//! client class and radclient, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{Backend, TestServer, actor, radclient};
use serde_json::{Value, json};
use tessera_core::model::{Application, Method, RadiusClient, TokenKind};

const SECRET: &str = "s3cret-for-the-tests";

async fn setup(b: Backend, factors: &[&[Method]], policy: &str) -> TestServer {
    let s = TestServer::start(b, Some(1_800_000_010)).await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("dave", Some("dave-password")).await;
    s.enroll("alice", TokenKind::Hotp, "OATHALICE", Some("1234"))
        .await;
    s.use_app("rollout", factors).await;
    let mut app: Application = s.admin().get("rollout").unwrap();
    match policy {
        "pass_on_no_token" => app.pass_on_no_token = true,
        "passthru" => app.passthru = true,
        _ => {}
    }
    s.admin().put(&actor(), app).await.unwrap();
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "vpn", "device_type": "vpn", "nas_ip": ["127.0.0.1"], "secret": SECRET,
        "application": "rollout",
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    s
}

fn pi(s: &TestServer, steps: Value) -> Vec<String> {
    common::python_peer("pi", "pi_clients.py", &["pi".into(), s.url.clone()], &steps)
        .iter()
        .map(|o| {
            o["body"]["result"]["authentication"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

async fn last_reason(s: &TestServer) -> String {
    s.audit("authenticate").await[0].reason.clone()
}

both_backends!(
    pass_on_no_user_lets_unknown_names_in_at_the_validate_api_and_radius_only,
    pass_on_no_token_lets_users_without_a_token_in,
    passthru_takes_the_user_stores_password_from_users_without_a_token,
);

async fn pass_on_no_token_lets_users_without_a_token_in(b: Backend) {
    let s = setup(b, &[&[Method::SoftOtp]], "pass_on_no_token").await;
    let out = pi(
        &s,
        json!([
            {"call": "validate_check", "user": "dave", "pass": "anything"},
            {"call": "validate_check", "user": "alice", "pass": "1234000000"},
            {"call": "validate_check", "user": "alice", "pass": format!("1234{}", s.hotp(0))},
        ]),
    );
    assert_eq!(out, ["ACCEPT", "REJECT", "ACCEPT"]);
    let accepted = s.audit("authenticate").await;
    assert!(
        accepted[2]
            .reason
            .contains("pass_on_no_token: the user has no token"),
        "{accepted:?}"
    );
    // A request that filters alice's tokens away (type=totp; she has an HOTP token) does not
    // make her a user without a token.
    let (auth, body) = s
        .check(&[("user", "alice"), ("pass", "nothing"), ("type", "totp")])
        .await;
    assert_eq!(auth, "REJECT", "{body}");
    // Nor does a disabled token.
    s.admin()
        .set_token_state(
            &actor(),
            "OATHALICE",
            tessera_core::model::TokenState::Disabled,
        )
        .await
        .unwrap();
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "nothing")]).await.0,
        "REJECT"
    );

    // Password first, then a token: dave passes with his password alone, not with a wrong one.
    s.use_app("rollout", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let mut app: Application = s.admin().get("rollout").unwrap();
    app.pass_on_no_token = true;
    s.admin().put(&actor(), app).await.unwrap();
    let out = pi(
        &s,
        json!([
            {"call": "validate_check", "user": "dave", "pass": "dave-password"},
            {"call": "validate_check", "user": "dave", "pass": "wrong-password"},
        ]),
    );
    assert_eq!(out, ["ACCEPT", "REJECT"]);
    let records = s.audit("authenticate").await;
    assert!(
        records[1]
            .reason
            .contains("pass_on_no_token: the user has no token; factor 2 skipped"),
        "{records:?}"
    );
    s.stop().await;
}

async fn passthru_takes_the_user_stores_password_from_users_without_a_token(b: Backend) {
    let s = setup(b, &[&[Method::SoftOtp]], "passthru").await;
    let out = pi(
        &s,
        json!([
            {"call": "validate_check", "user": "dave", "pass": "dave-password"},
            {"call": "validate_check", "user": "dave", "pass": "not-daves-password"},
            // alice has a token: her password is no answer.
            {"call": "validate_check", "user": "alice", "pass": "alice-password"},
            {"call": "validate_check", "user": "alice", "pass": format!("1234{}", s.hotp(0))},
        ]),
    );
    assert_eq!(out, ["ACCEPT", "REJECT", "REJECT", "ACCEPT"]);
    let records = s.audit("authenticate").await;
    assert!(
        records[3]
            .reason
            .contains("passthru: the user has no token"),
        "{records:?}"
    );
    assert!(!records[1].reason.contains("passthru"), "{records:?}");
    // Over RADIUS too.
    let addr = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let (ok, out) = radclient(
        addr,
        "auth",
        SECRET,
        "User-Name = dave\nUser-Password = dave-password\nMessage-Authenticator = 0x00\n",
    );
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    assert!(last_reason(&s).await.contains("passthru"));
    s.stop().await;
}

/// Under `passthru` a user without a token has a password checked: an unknown user takes as
/// long (timing medians), so that the answer's time tells nobody who exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthru_answers_unknown_users_as_slowly() {
    let s = setup(Backend::Sqlite, &[&[Method::SoftOtp]], "passthru").await;
    s.set(json!({"account_locking": false, "argon2_memory_kib": 19456, "argon2_iterations": 1}))
        .await;
    // A user whose password is hashed with these parameters, as an unknown user's check is.
    s.add_user("erin", Some("erin-password")).await;
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..60 {
        for (i, user) in ["erin", "nobody"].iter().enumerate() {
            let started = std::time::Instant::now();
            let (auth, _) = s.check(&[("user", user), ("pass", "wrong")]).await;
            times[i].push(started.elapsed().as_secs_f64());
            assert_eq!(auth, "REJECT");
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let (known, unknown) = (median(&mut times[0]), median(&mut times[1]));
    assert!(
        known.min(unknown) > known.max(unknown) / 2.0,
        "medians differ: without a token {known:.4} s, unknown {unknown:.4} s"
    );
    s.stop().await;
}

async fn pass_on_no_user_lets_unknown_names_in_at_the_validate_api_and_radius_only(b: Backend) {
    let s = setup(b, &[&[Method::SoftOtp]], "").await;
    // Not where a password would be skipped.
    let mut pw: Application = s.admin().get("rollout").unwrap();
    pw.name = "with-password".into();
    pw.factors = vec![tessera_core::model::Factor::of(vec![Method::Password])];
    pw.pass_on_no_user = true;
    let refused = s.admin().put(&actor(), pw).await.unwrap_err().to_string();
    assert!(refused.contains("pass_on_no_user"), "{refused}");
    let mut app: Application = s.admin().get("rollout").unwrap();
    app.pass_on_no_user = true;
    s.admin().put(&actor(), app).await.unwrap();
    let out = pi(
        &s,
        json!([
            {"call": "validate_check", "user": "nobody", "pass": "anything"},
            // Known users answer as ever: dave has no token, alice a wrong code.
            {"call": "validate_check", "user": "dave", "pass": "anything"},
            {"call": "validate_check", "user": "alice", "pass": "1234000000"},
        ]),
    );
    assert_eq!(out, ["ACCEPT", "REJECT", "REJECT"]);
    let records = s.audit("authenticate").await;
    assert!(
        records[2]
            .reason
            .contains("pass_on_no_user: no user source knows the name"),
        "{records:?}"
    );
    let addr = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let (ok, out) = radclient(
        addr,
        "auth",
        SECRET,
        "User-Name = nobody\nUser-Password = x\nMessage-Authenticator = 0x00\n",
    );
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // Never on the web pages: the account sign-in through the same application refuses.
    s.set(json!({"account_application": "rollout"})).await;
    let mut browser = common::Browser::new(&s.url, "en");
    let (_, _, page) = browser.get("/login").await;
    let csrf = common::hidden_input(&page, "csrf");
    let (status, at, page) = browser
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "nobody"),
                ("answer", "123456"),
            ],
        )
        .await;
    assert_eq!(
        (status, at.as_str()),
        (200, "/login"),
        "not signed in: {page}"
    );
    assert!(page.contains("Wrong user name, PIN or code."), "{page}");
    s.stop().await;
}
