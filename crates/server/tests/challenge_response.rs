//! privacyIDEA's challenge-response, as its most common RADIUS set-up uses it (its FreeRADIUS
//! module in front of `/validate/check`, tokens with PINs, the `challenge_response` policy):
//! the PIN and the code in one field pass at once, the PIN alone asks for the code, the PIN
//! with a wrong code is refused — through privacyIDEA's own client class, the raw API with
//! `state`, and radclient, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{Backend, TestServer, actor, radclient, radclient_attr};
use serde_json::{Value, json};
use tessera_core::model::{Application, Method, RadiusClient, TokenKind};

const SECRET: &str = "s3cret-for-the-tests";

async fn setup(b: Backend, first: Method) -> TestServer {
    let s = TestServer::start(b, Some(1_800_000_010)).await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("carol", Some("carol-password")).await;
    // A PIN with characters the clients must quote.
    s.enroll("alice", TokenKind::Hotp, "OATHALICE", Some("pin 12&34"))
        .await;
    s.enroll("carol", TokenKind::Hotp, "OATHCAROL", None).await;
    s.use_app("pi", &[&[first]]).await;
    let mut app: Application = s.admin().get("pi").unwrap();
    app.challenge_response = true;
    s.admin().put(&actor(), app).await.unwrap();
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "vpn", "device_type": "vpn", "nas_ip": ["127.0.0.1"], "secret": SECRET,
        "application": "pi",
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    s
}

fn pi(s: &TestServer, steps: Value) -> Vec<Value> {
    common::python_peer("pi", "pi_clients.py", &["pi".into(), s.url.clone()], &steps)
}

fn auth(out: &Value) -> &str {
    out["body"]["result"]["authentication"]
        .as_str()
        .unwrap_or("")
}

both_backends!(
    a_challenge_triggered_with_the_right_pin_clears_a_lapsed_fail_counter,
    the_pin_alone_asks_for_the_code_through_privacyideas_client,
    the_password_alone_asks_for_the_code_of_password_and_otp,
    radclient_gets_a_challenge_for_the_pin_alone,
);

async fn the_pin_alone_asks_for_the_code_through_privacyideas_client(b: Backend) {
    let s = setup(b, Method::SoftOtp).await;
    let pin = "pin 12&34";
    let out = pi(
        &s,
        json!([
            // 0: PIN and code in one field: at once.
            {"call": "validate_check", "user": "alice", "pass": format!("{pin}{}", s.hotp(0))},
            // 1: the PIN alone: a challenge for alice's token; 2: its answer, the code alone.
            {"call": "validate_check", "user": "alice", "pass": pin},
            {"call": "validate_check", "user": "alice", "pass": s.hotp(1), "answer": 1},
            // 3: the PIN with a wrong code.
            {"call": "validate_check", "user": "alice", "pass": format!("{pin}000000")},
            // 4: a wrong PIN alone, 5: an unknown user: the same answer.
            {"call": "validate_check", "user": "alice", "pass": "not-the-pin"},
            {"call": "validate_check", "user": "nobody", "pass": "not-the-pin"},
            // 6: a token without a PIN: the empty PIN asks for its code.
            {"call": "validate_check", "user": "carol", "pass": ""},
            {"call": "validate_check", "user": "carol", "pass": s.hotp(0), "answer": 6},
        ]),
    );
    assert_eq!(auth(&out[0]), "ACCEPT", "{out:?}");
    assert_eq!(auth(&out[1]), "CHALLENGE", "{out:?}");
    let detail = &out[1]["body"]["detail"];
    assert_eq!(
        detail["multi_challenge"][0]["serial"], "OATHALICE",
        "{detail}"
    );
    assert_eq!(detail["multi_challenge"].as_array().unwrap().len(), 1);
    assert_eq!(detail["transaction_id"].as_str().unwrap().len(), 20);
    assert_eq!(auth(&out[2]), "ACCEPT", "{out:?}");
    assert_eq!(auth(&out[3]), "REJECT", "{out:?}");
    assert_eq!(auth(&out[4]), "REJECT", "{out:?}");
    let timeless = |v: &Value| {
        let mut v = v["body"].clone();
        v.as_object_mut().unwrap().remove("time");
        v
    };
    assert_eq!(
        timeless(&out[4]),
        timeless(&out[5]),
        "a wrong PIN tells nothing"
    );
    assert_eq!(auth(&out[6]), "CHALLENGE", "{out:?}");
    assert_eq!(auth(&out[7]), "ACCEPT", "{out:?}");

    // The second round by the alias privacyIDEA's FreeRADIUS module sends: `state`.
    let (_, body) = s
        .post("/validate/check", &[("user", "alice"), ("pass", pin)])
        .await;
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = s
        .post(
            "/validate/check",
            &[("user", "alice"), ("state", &tx), ("pass", &s.hotp(2))],
        )
        .await;
    assert_eq!(body["result"]["authentication"], "ACCEPT", "{body}");
    // A wrong code in the second round counts as one; the challenge's code is the code alone.
    let (_, body) = s
        .post("/validate/check", &[("user", "alice"), ("pass", pin)])
        .await;
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let with_pin = format!("{pin}{}", s.hotp(3));
    let (_, body) = s
        .post(
            "/validate/check",
            &[
                ("user", "alice"),
                ("transaction_id", &tx),
                ("pass", &with_pin),
            ],
        )
        .await;
    assert_eq!(body["result"]["authentication"], "REJECT", "{body}");

    // The right PIN is no failure: five PIN-alone rounds lock nothing (max 5 wrong attempts).
    for _ in 0..6 {
        let (_, body) = s
            .post("/validate/check", &[("user", "alice"), ("pass", pin)])
            .await;
        assert_eq!(body["result"]["authentication"], "CHALLENGE", "{body}");
    }
    // Off: the PIN alone is a wrong answer again.
    let mut app: Application = s.admin().get("pi").unwrap();
    app.challenge_response = false;
    s.admin().put(&actor(), app).await.unwrap();
    let (_, body) = s
        .post("/validate/check", &[("user", "alice"), ("pass", pin)])
        .await;
    assert_eq!(body["result"]["authentication"], "REJECT", "{body}");
    s.stop().await;
}

async fn the_password_alone_asks_for_the_code_of_password_and_otp(b: Backend) {
    let s = setup(b, Method::PasswordOtp).await;
    let out = pi(
        &s,
        json!([
            {"call": "validate_check", "user": "alice", "pass": format!("alice-password{}", s.hotp(0))},
            {"call": "validate_check", "user": "alice", "pass": "alice-password"},
            {"call": "validate_check", "user": "alice", "pass": s.hotp(1), "answer": 1},
            {"call": "validate_check", "user": "alice", "pass": "alice-password000000"},
            {"call": "validate_check", "user": "alice", "pass": "wrong-password"},
        ]),
    );
    assert_eq!(auth(&out[0]), "ACCEPT", "{out:?}");
    assert_eq!(auth(&out[1]), "CHALLENGE", "{out:?}");
    assert_eq!(auth(&out[2]), "ACCEPT", "{out:?}");
    assert_eq!(auth(&out[3]), "REJECT", "{out:?}");
    assert_eq!(auth(&out[4]), "REJECT", "{out:?}");
    s.stop().await;
}

async fn radclient_gets_a_challenge_for_the_pin_alone(b: Backend) {
    let s = setup(b, Method::SoftOtp).await;
    let addr = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let request = |pass: &str, state: Option<&str>| {
        let mut attrs = format!("User-Name = alice\nUser-Password = \"{pass}\"\n");
        if let Some(st) = state {
            attrs.push_str(&format!("State = {st}\n"));
        }
        attrs.push_str("Message-Authenticator = 0x00\n");
        radclient(addr, "auth", SECRET, &attrs)
    };
    let pin = "pin 12&34";
    let (ok, out) = request(&format!("{pin}{}", s.hotp(0)), None);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    let (ok, out) = request(pin, None);
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    let state = radclient_attr(&out, "State").expect("State");
    let (ok, out) = request(&s.hotp(1), Some(&state));
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    let (ok, out) = request(&format!("{pin}000000"), None);
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    s.stop().await;
}

/// Seed 002: a challenge triggered with the right PIN clears the fail counter once
/// `failcounter_clear_minutes` have passed since its limit was reached (not before).
async fn a_challenge_triggered_with_the_right_pin_clears_a_lapsed_fail_counter(b: Backend) {
    let s = setup(b, Method::SoftOtp).await;
    s.set(json!({"account_locking": false, "failcounter_clear_minutes": 30}))
        .await;
    s.admin()
        .update_token(&actor(), "OATHALICE", None, Some(2), None, None)
        .await
        .unwrap();
    let pin = "pin 12&34";
    for _ in 0..2 {
        let (auth, _) = s
            .check(&[("user", "alice"), ("pass", &format!("{pin}000000"))])
            .await;
        assert_eq!(auth, "REJECT");
    }
    let fails = || async { s.admin().get_token("OATHALICE").await.unwrap().fail_count };
    assert_eq!(fails().await, 2);
    // Within the clear time: a challenge, and the counter stays.
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", pin)]).await.0,
        "CHALLENGE"
    );
    assert_eq!(fails().await, 2);
    s.advance(31 * 60);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", pin)]).await.0,
        "CHALLENGE"
    );
    assert_eq!(fails().await, 0, "cleared by the triggered challenge");
    s.stop().await;
}
