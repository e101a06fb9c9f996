//! The validate API end to end, on SQLite and PostgreSQL: OTP windows and single use checked
//! against oathtool, PIN handling, fail counters, auto-resync, lockout, challenge-response and
//! the privacyIDEA JSON shapes, with a fake clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_core::model::{AdminRole, Factor, Method, TokenKind};

/// Mid-way through a 30-second step.
const T0: i64 = 1_800_000_010;

both_backends!(
    totp_codes_from_oathtool_within_the_window_only,
    hotp_counter_window_and_single_use,
    auto_resync_from_two_consecutive_codes,
    fail_counter_max_and_clearing,
    pin_before_or_after_the_otp,
    wrong_pin_counts_against_all_tokens_only_when_set,
    no_auth_counter_setting,
    password_and_otp_in_one_field,
    lockout_and_its_expiry,
    password_budget_is_separate,
    challenge_response_across_two_legs,
    privacyidea_json_shapes,
    bad_input_is_a_905_and_changes_nothing,
    uniform_answer_and_optional_904,
    trigger_challenge_with_service_account,
    poll_transaction,
    radiuscheck_and_samlcheck,
    client_override_for_trusted_proxies,
    serial_and_otponly,
    if_enrolled_factor_skipped_only_by_users_without_a_token,
);

async fn otp_server(backend: Backend) -> TestServer {
    let s = TestServer::start(backend, Some(T0)).await;
    s.add_user("alice", Some("alice-password")).await;
    s
}

async fn totp_codes_from_oathtool_within_the_window_only(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0001", None).await;
    let check = |code: String| {
        let s = &s;
        async move { s.check(&[("user", "alice"), ("pass", &code)]).await.0 }
    };
    // Outside the ±1 step window.
    assert_eq!(check(s.totp(-2)).await, "REJECT");
    assert_eq!(check(s.totp(2)).await, "REJECT");
    // Inside, each once, in order.
    assert_eq!(check(s.totp(-1)).await, "ACCEPT");
    assert_eq!(check(s.totp(0)).await, "ACCEPT");
    assert_eq!(check(s.totp(0)).await, "REJECT", "replayed");
    assert_eq!(
        check(s.totp(-1)).await,
        "REJECT",
        "older than the last accepted"
    );
    assert_eq!(check(s.totp(1)).await, "ACCEPT");
    // Time moves on: the next step's code works, the spent one does not.
    s.advance(60);
    assert_eq!(
        check(s.totp(-1)).await,
        "REJECT",
        "same step as the last accepted"
    );
    assert_eq!(check(s.totp(0)).await, "ACCEPT");
    let token = s.admin().get_token("TOTP0001").await.unwrap();
    // Nine tries, four successes; the last success cleared the fail counter.
    assert_eq!(
        (token.count_auth, token.count_auth_success, token.fail_count),
        (9, 4, 0)
    );
    let audit = s.audit("authenticate").await;
    assert_eq!(audit[0].result, "accept");
    assert!(
        audit
            .iter()
            .any(|r| r.reason.starts_with("OTP already used (attempt ")),
        "{audit:?}"
    );
    s.stop().await;
}

async fn hotp_counter_window_and_single_use(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Hotp, "OATH0001", None).await;
    let check = |c: u64| {
        let s = &s;
        async move { s.check(&[("user", "alice"), ("pass", &s.hotp(c))]).await.0 }
    };
    assert_eq!(check(3).await, "ACCEPT");
    assert_eq!(check(3).await, "REJECT");
    assert_eq!(check(2).await, "REJECT");
    // The window is 10 counters from the next one (4..=13).
    assert_eq!(check(14).await, "REJECT");
    assert_eq!(check(13).await, "ACCEPT");
    assert_eq!(s.admin().get_token("OATH0001").await.unwrap().counter, 14);
    s.stop().await;
}

async fn auto_resync_from_two_consecutive_codes(b: Backend) {
    let s = otp_server(b).await;
    s.set(json!({"account_locking": false})).await;
    s.enroll("alice", TokenKind::Hotp, "OATH0002", None).await;
    let check = |c: u64| {
        let s = &s;
        async move { s.check(&[("user", "alice"), ("pass", &s.hotp(c))]).await.0 }
    };
    // Off: a code beyond the window never resyncs.
    assert_eq!(check(50).await, "REJECT");
    assert_eq!(check(51).await, "REJECT");
    s.set(json!({"auto_resync": true, "auto_resync_timeout_seconds": 300}))
        .await;
    assert_eq!(check(60).await, "REJECT", "first code remembered");
    assert_eq!(
        check(61).await,
        "ACCEPT",
        "second, consecutive code resyncs"
    );
    assert_eq!(s.admin().get_token("OATH0002").await.unwrap().counter, 62);
    // Not consecutive: no resync.
    assert_eq!(check(100).await, "REJECT");
    assert_eq!(check(102).await, "REJECT");
    // Too late: no resync.
    assert_eq!(check(200).await, "REJECT");
    s.advance(301);
    assert_eq!(check(201).await, "REJECT");
    // The normal window still works from the resynced counter.
    assert_eq!(check(62).await, "ACCEPT");
    s.stop().await;
}

async fn fail_counter_max_and_clearing(b: Backend) {
    let s = otp_server(b).await;
    s.set(json!({"account_locking": false})).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0003", None).await;
    s.admin()
        .update_token(&common::actor(), "TOTP0003", None, Some(3), None, None)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            s.check(&[("user", "alice"), ("pass", "000000")]).await.0,
            "REJECT"
        );
    }
    let t = s.admin().get_token("TOTP0003").await.unwrap();
    assert_eq!((t.fail_count, t.locked), (3, true), "capped at max fail");
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "REJECT",
        "locked token"
    );
    let audit = s.audit("authenticate").await;
    assert_eq!(audit[0].reason, "token fail counter exceeded");
    // Automatic clearing: a correct OTP after the configured minutes clears the counter.
    s.set(json!({"failcounter_clear_minutes": 5})).await;
    s.advance(4 * 60);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "REJECT",
        "not yet"
    );
    s.advance(60);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    assert_eq!(s.admin().get_token("TOTP0003").await.unwrap().fail_count, 0);
    // An administrator's reset works at once (the CLI beside the running server).
    for _ in 0..3 {
        s.check(&[("user", "alice"), ("pass", "000000")]).await;
    }
    let out = common::tessera_ok(&s, &["token", "reset-failcount", "TOTP0003"]);
    assert!(out.status.success());
    assert_eq!(
        s.audit("token_reset").await[0].reason,
        "fail counter reset (was 3)"
    );
    s.advance(30);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

async fn pin_before_or_after_the_otp(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0004", Some("4711"))
        .await;
    let pass = format!("4711{}", s.totp(0));
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &pass)]).await.0,
        "ACCEPT"
    );
    // OTP alone is not enough for a token with a PIN.
    s.advance(30);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "REJECT"
    );
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "wrong token PIN (attempt 1 of 5)"
    );
    // PIN after the OTP.
    s.set(json!({"prepend_pin": false})).await;
    let pass = format!("{}4711", s.totp(0));
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &pass)]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

async fn wrong_pin_counts_against_all_tokens_only_when_set(b: Backend) {
    let s = otp_server(b).await;
    s.set(json!({"account_locking": false})).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0005", Some("1111"))
        .await;
    s.enroll("alice", TokenKind::Hotp, "OATH0005", Some("2222"))
        .await;
    let fails = || async {
        (
            s.admin().get_token("TOTP0005").await.unwrap().fail_count,
            s.admin().get_token("OATH0005").await.unwrap().fail_count,
        )
    };
    let wrong = format!("9999{}", s.totp(0));
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &wrong)]).await.0,
        "REJECT"
    );
    assert_eq!(fails().await, (0, 0));
    // Right PIN, wrong OTP: only that token counts.
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "1111000000")])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(fails().await, (1, 0));
    s.set(json!({"increase_failcounter_on_wrong_pin": true}))
        .await;
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &wrong)]).await.0,
        "REJECT"
    );
    assert_eq!(fails().await, (2, 1));
    s.stop().await;
}

async fn no_auth_counter_setting(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0006", None).await;
    s.set(json!({"no_auth_counter": true})).await;
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "000000")]).await.0,
        "REJECT"
    );
    let t = s.admin().get_token("TOTP0006").await.unwrap();
    assert_eq!(
        (t.count_auth, t.count_auth_success, t.fail_count),
        (0, 0, 1)
    );
    s.stop().await;
}

async fn password_and_otp_in_one_field(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0007", Some("pin-is-ignored"))
        .await;
    s.use_app("vpn", &[&[Method::PasswordOtp]]).await;
    let ok = format!("alice-password{}", s.totp(0));
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &ok)]).await.0,
        "ACCEPT"
    );
    let bad_pw = format!("wrong-password{}", s.totp(1));
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &bad_pw)]).await.0,
        "REJECT"
    );
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "wrong password (attempt 1 of 5)"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password000000")])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "wrong OTP value (attempt 2 of 5)"
    );
    s.stop().await;
}

async fn lockout_and_its_expiry(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0008", None).await;
    s.set(json!({"max_otp_attempts": 3, "lock_period_minutes": 2, "incorrect_attempt_interval_minutes": 30}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            s.check(&[("user", "alice"), ("pass", "000000")]).await.0,
            "REJECT"
        );
    }
    // Locked: even the right code is refused, with the same answer.
    let (auth, body) = s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await;
    assert_eq!(auth, "REJECT");
    assert_eq!(body["detail"]["message"], "Authentication failed.");
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "account locked after too many failed attempts"
    );
    // Unknown users are locked alike (nothing tells them apart).
    for _ in 0..4 {
        s.check(&[("user", "mallory"), ("pass", "000000")]).await;
    }
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "account locked after too many failed attempts"
    );
    s.advance(121);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    // Success cleared the count: two more failures do not lock.
    for _ in 0..2 {
        s.check(&[("user", "alice"), ("pass", "000000")]).await;
    }
    s.advance(30);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

async fn password_budget_is_separate(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0009", None).await;
    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    s.set(json!({"max_password_attempts": 2, "max_otp_attempts": 5}))
        .await;
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "nope-1")]).await.0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "CHALLENGE"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "nope-2")]).await.0,
        "REJECT"
    );
    // Password budget used up: the right password is refused now.
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "REJECT"
    );
    s.stop().await;
}

async fn challenge_response_across_two_legs(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0010", None).await;
    s.enroll("alice", TokenKind::Hotp, "OATH0010", None).await;
    s.add_user("bob", Some("bob-password")).await;
    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;

    let (auth, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(auth, "CHALLENGE");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tx.len(), 20);
    assert!(tx.bytes().all(|c| c.is_ascii_digit()));
    let multi = body["detail"]["multi_challenge"].as_array().unwrap();
    assert_eq!(multi.len(), 2, "both tokens may answer");
    // The second leg: a wrong OTP is rejected and the challenge stays open.
    let (auth, _) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", "000000"),
        ])
        .await;
    assert_eq!(auth, "REJECT");
    // Another user cannot answer alice's challenge.
    let (auth, _) = s
        .check(&[
            ("user", "bob"),
            ("transaction_id", &tx),
            ("pass", &s.totp(0)),
        ])
        .await;
    assert_eq!(auth, "REJECT");
    // Any challenged token answers; `state` is accepted as the transaction id's alias.
    let (auth, body) = s
        .check(&[("user", "alice"), ("state", &tx), ("pass", &s.hotp(0))])
        .await;
    assert_eq!(auth, "ACCEPT", "{body}");
    assert_eq!(body["detail"]["serial"], "OATH0010");
    // Finished: the id cannot be used again.
    let (auth, _) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &s.totp(0)),
        ])
        .await;
    assert_eq!(auth, "REJECT");
    // A challenge expires after challenge_validity_seconds.
    let (_, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.advance(121);
    let (auth, _) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &s.totp(0)),
        ])
        .await;
    assert_eq!(auth, "REJECT");
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "unknown, expired or finished transaction"
    );
    // The OTP was not spent by the expired attempt.
    let (_, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (auth, _) = s
        .check(&[("transaction_id", &tx), ("pass", &s.totp(0))])
        .await;
    assert_eq!(auth, "ACCEPT", "the user may be left out of the second leg");
    s.stop().await;
}

async fn privacyidea_json_shapes(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0011", None).await;
    let (_, accept) = s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await;
    assert_eq!(accept["jsonrpc"], "2.0");
    assert_eq!(accept["id"], 2);
    assert!(accept["version"].as_str().unwrap().contains("privacyIDEA"));
    assert!(accept["versionnumber"].is_string());
    assert!(accept["time"].is_f64());
    assert_eq!(
        accept["result"],
        json!({"status": true, "value": true, "authentication": "ACCEPT"})
    );
    assert_eq!(accept["detail"]["message"], "matching 1 tokens");
    assert_eq!(accept["detail"]["serial"], "TOTP0011");
    assert_eq!(accept["detail"]["type"], "totp");

    let (_, reject) = s.check(&[("user", "alice"), ("pass", "123456")]).await;
    assert_eq!(
        reject["result"],
        json!({"status": true, "value": false, "authentication": "REJECT"})
    );
    assert_eq!(
        reject["detail"],
        json!({"message": "Authentication failed."})
    );

    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let (_, ch) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(
        ch["result"],
        json!({"status": true, "value": false, "authentication": "CHALLENGE"})
    );
    let d = &ch["detail"];
    let tx = d["transaction_id"].as_str().unwrap();
    assert_eq!(d["transaction_ids"], json!([tx]));
    assert_eq!(d["serial"], "TOTP0011");
    assert_eq!(d["type"], "totp");
    assert_eq!(d["preferred_client_mode"], "interactive");
    assert_eq!(d["message"], "Please enter the OTP from your authenticator");
    assert_eq!(
        d["messages"],
        json!(["Please enter the OTP from your authenticator"])
    );
    let c = &d["multi_challenge"][0];
    assert_eq!(c["transaction_id"], tx);
    assert_eq!(c["serial"], "TOTP0011");
    assert_eq!(c["type"], "totp");
    assert_eq!(c["client_mode"], "interactive");
    assert_eq!(c["message"], "Please enter the OTP from your authenticator");

    // JSON bodies and GET with a query string work the same.
    let res = s
        .http
        .post(format!("{}/validate/check", s.url))
        .json(&json!({"user": "alice", "pass": "alice-password"}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["result"]["authentication"], "CHALLENGE");
    let body: Value = s
        .http
        .get(format!(
            "{}/validate/check?user=alice&pass=alice-password",
            s.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["result"]["authentication"], "CHALLENGE");
    s.stop().await;
}

async fn bad_input_is_a_905_and_changes_nothing(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0012", None).await;
    let before = s.audit("authenticate").await.len();
    let long = "x".repeat(300);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("user", "alice")],
        vec![("pass", "123456")],
        vec![("user", "alice"), ("pass", "1"), ("transaction_id", "123")],
        vec![("user", "alice"), ("pass", "1"), ("type", "carrier-pigeon")],
        vec![("user", long.as_str()), ("pass", "1")],
    ];
    for form in cases {
        let (status, body) = s.post("/validate/check", &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert_eq!(body["result"]["status"], false);
        assert_eq!(body["result"]["error"]["code"], 905);
        assert!(
            body["result"]["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("ERR905: ")
        );
    }
    let res = s
        .http
        .post(format!("{}/validate/check", s.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = s
        .http
        .post(format!("{}/validate/check", s.url))
        .form(&[("user", "alice"), ("pass", &"1".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        s.audit("authenticate").await.len(),
        before,
        "no decision was made"
    );
    let t = s.admin().get_token("TOTP0012").await.unwrap();
    assert_eq!((t.fail_count, t.count_auth), (0, 0));
    s.stop().await;
}

async fn uniform_answer_and_optional_904(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0013", None).await;
    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let strip = |mut v: Value| {
        v["time"] = Value::Null;
        v
    };
    let (_, unknown) = s
        .check(&[("user", "nobody"), ("pass", "whatever-pw")])
        .await;
    let (_, wrong_pw) = s.check(&[("user", "alice"), ("pass", "whatever-pw")]).await;
    assert_eq!(strip(unknown), strip(wrong_pw));
    let (_, ch) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    let tx = ch["detail"]["transaction_id"].as_str().unwrap().to_string();
    let (_, wrong_otp) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", "000000"),
        ])
        .await;
    let (_, unknown) = s
        .check(&[("user", "nobody"), ("pass", "whatever-pw")])
        .await;
    assert_eq!(strip(wrong_otp), strip(unknown));
    s.set(json!({"unknown_user_error": true})).await;
    let (status, body) = s
        .post("/validate/check", &[("user", "nobody"), ("pass", "x")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["result"]["error"]["code"], 904);
    s.stop().await;
}

async fn trigger_challenge_with_service_account(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0014", Some("1234"))
        .await;
    s.add_user("carol", None).await;
    let form = [("user", "alice")];
    let (status, body) = s.post("/validate/triggerchallenge", &form).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let service = s.admin_token("radius-proxy", AdminRole::Service).await;
    let auditor = s.admin_token("auditor", AdminRole::Auditor).await;
    let trigger = |token: String, user: &'static str, header: &'static str| {
        let s = &s;
        async move {
            let res = s
                .http
                .post(format!("{}/validate/triggerchallenge", s.url))
                .header(header, token)
                .form(&[("user", user)])
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = trigger(auditor, "alice", "Authorization").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // privacyIDEA clients send the bare token in PI-Authorization.
    let (status, body) = trigger(service.clone(), "alice", "PI-Authorization").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["value"], 1);
    assert_eq!(body["detail"]["multi_challenge"][0]["serial"], "TOTP0014");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The answer is the OTP alone: the service account vouched for the first factor.
    let (auth, _) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &s.totp(0)),
        ])
        .await;
    assert_eq!(auth, "ACCEPT");
    let (status, body) = trigger(format!("Bearer {service}"), "carol", "Authorization").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["value"], 0);
    assert_eq!(body["detail"]["messages"], json!([]));
    let (status, body) = trigger(service, "nobody", "Authorization").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["result"]["error"]["code"], 904);
    let audit = s.audit("trigger_challenge").await;
    assert!(
        audit
            .iter()
            .any(|r| r.actor == "service:radius-proxy" && r.result == "challenge")
    );
    s.stop().await;
}

async fn poll_transaction(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0015", None).await;
    s.use_app("vpn", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let (_, ch) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    let tx = ch["detail"]["transaction_id"].as_str().unwrap().to_string();
    for url in [
        format!("{}/validate/polltransaction?transaction_id={tx}", s.url),
        format!("{}/validate/polltransaction/{tx}", s.url),
        format!(
            "{}/validate/polltransaction?transaction_id=11111111111111111111",
            s.url
        ),
    ] {
        let body: Value = s.http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["result"]["value"], false);
        assert_eq!(body["detail"]["challenge_status"], "pending");
    }
    let res = s
        .http
        .get(format!(
            "{}/validate/polltransaction?transaction_id=abc",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

async fn radiuscheck_and_samlcheck(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0016", None).await;
    let res = s
        .http
        .post(format!("{}/validate/radiuscheck", s.url))
        .form(&[("user", "alice"), ("pass", &s.totp(0))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.text().await.unwrap().is_empty());
    let res = s
        .http
        .post(format!("{}/validate/radiuscheck", s.url))
        .form(&[("user", "alice"), ("pass", "000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().is_empty());

    let (_, body) = s
        .post(
            "/validate/samlcheck",
            &[("user", "alice"), ("pass", &s.totp(1))],
        )
        .await;
    assert_eq!(body["result"]["authentication"], "ACCEPT");
    let v = &body["result"]["value"];
    assert_eq!(v["auth"], true);
    assert_eq!(v["attributes"]["username"], "alice");
    assert_eq!(v["attributes"]["email"], "alice@example.org");
    assert_eq!(v["attributes"]["givenname"], "Given");
    assert_eq!(v["attributes"]["realm"], "default");
    let (_, body) = s
        .post(
            "/validate/samlcheck",
            &[("user", "alice"), ("pass", "000000")],
        )
        .await;
    assert_eq!(
        body["result"]["value"],
        json!({"auth": false, "attributes": {}})
    );
    s.set(json!({"include_saml_attributes_on_fail": true}))
        .await;
    let (_, body) = s
        .post(
            "/validate/samlcheck",
            &[("user", "alice"), ("pass", "000000")],
        )
        .await;
    assert_eq!(body["result"]["value"]["auth"], false);
    assert_eq!(body["result"]["value"]["attributes"]["username"], "alice");
    s.stop().await;
}

async fn client_override_for_trusted_proxies(b: Backend) {
    let s = otp_server(b).await;
    let check_from = |xff: Option<&'static str>, client: Option<&'static str>| {
        let s = &s;
        async move {
            let mut form = vec![("user", "alice"), ("pass", "000000")];
            if let Some(c) = client {
                form.push(("client", c));
            }
            let mut req = s.http.post(format!("{}/validate/check", s.url)).form(&form);
            if let Some(x) = xff {
                req = req.header("X-Forwarded-For", x);
            }
            req.send().await.unwrap();
            s.audit("authenticate").await[0].client_ip.clone().unwrap()
        }
    };
    s.set(json!({"account_locking": false})).await;
    assert_eq!(
        check_from(Some("10.1.2.3"), Some("192.168.0.9")).await,
        "127.0.0.1",
        "untrusted"
    );
    s.set(json!({"override_client": "127.0.0.1 > 10.0.0.0/8 > 192.168.0.0/16"}))
        .await;
    assert_eq!(check_from(Some("10.1.2.3"), None).await, "10.1.2.3");
    assert_eq!(
        check_from(Some("10.1.2.3"), Some("192.168.0.9")).await,
        "192.168.0.9"
    );
    assert_eq!(
        check_from(Some("10.1.2.3"), Some("8.8.8.8")).await,
        "10.1.2.3",
        "not vouched for"
    );
    assert_eq!(check_from(Some("172.16.0.1"), None).await, "127.0.0.1");
    s.stop().await;
}

async fn serial_and_otponly(b: Backend) {
    let s = otp_server(b).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0017", Some("1234"))
        .await;
    s.enroll("alice", TokenKind::Hotp, "OATH0017", Some("1234"))
        .await;
    let pass = format!("1234{}", s.hotp(0));
    let (auth, body) = s.check(&[("serial", "OATH0017"), ("pass", &pass)]).await;
    assert_eq!(auth, "ACCEPT", "{body}");
    // The serial restricts the tokens: a TOTP code does not match the HOTP token.
    let pass = format!("1234{}", s.totp(0));
    assert_eq!(
        s.check(&[("user", "alice"), ("serial", "OATH0017"), ("pass", &pass)])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("type", "totp"), ("pass", &pass)])
            .await
            .0,
        "ACCEPT"
    );
    // otponly (the OTP without the PIN) from anyone is ignored: the PIN is still asked for, on
    // every validate endpoint.
    // (More wrong answers than the account lock allows by default follow.)
    s.set(serde_json::json!({"max_otp_attempts": 50, "max_password_attempts": 50}))
        .await;
    let otp = s.hotp(1);
    let form = [
        ("serial", "OATH0017"),
        ("otponly", "1"),
        ("pass", otp.as_str()),
        ("user", "alice"),
    ];
    assert_eq!(s.check(&form).await.0, "REJECT");
    let (status, _) = s.post("/validate/radiuscheck", &form).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    let (_, body) = s.post("/validate/samlcheck", &form).await;
    assert_eq!(body["result"]["value"]["auth"], false, "{body}");
    let (auth, body) = s.check(&form[..3]).await;
    assert_eq!(auth, "REJECT", "{body}");
    // ... and with the PIN the code still works: otponly switched nothing.
    let pass = format!("1234{}", s.hotp(1));
    assert_eq!(
        s.check(&[("serial", "OATH0017"), ("otponly", "1"), ("pass", &pass)])
            .await
            .0,
        "ACCEPT"
    );
    // An administrator's token test (signed in through /auth, naming the serial) may leave the
    // PIN out; an auditor's may not.
    let auditor = s
        .admin_token("audrey", tessera_core::model::AdminRole::Auditor)
        .await;
    let admin = s
        .admin_token("ada", tessera_core::model::AdminRole::Admin)
        .await;
    let test_token = |token: String, counter: u64| {
        let s = &s;
        async move {
            let res = s
                .http
                .post(format!("{}/validate/check", s.url))
                .header("PI-Authorization", token)
                .form(&[
                    ("serial", "OATH0017"),
                    ("otponly", "1"),
                    ("pass", &s.hotp(counter)),
                ])
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = res.json().await.unwrap();
            body["result"]["authentication"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(test_token(auditor, 2).await, "REJECT");
    assert_eq!(test_token(admin.clone(), 3).await, "ACCEPT");
    let tests = s.audit("authenticate").await;
    assert_eq!(tests[0].actor, "admin:ada", "{:?}", tests[0]);
    assert_eq!(
        s.check(&[("serial", "NOPE"), ("pass", "123456")]).await.0,
        "REJECT"
    );
    s.stop().await;
}

/// An `if_enrolled` OTP factor: users without a token pass with their password (seed 003's MFA
/// role), users with one are asked for it — also when the request names a serial or type that
/// matches none of their tokens — and `forced_mfa` asks everyone.
async fn if_enrolled_factor_skipped_only_by_users_without_a_token(b: Backend) {
    let s = otp_server(b).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0030", None).await;
    let mut app = tessera_core::model::Application {
        name: "vpn".into(),
        kind: Default::default(),
        description: String::new(),
        factors: vec![
            Factor::of(vec![Method::Password]),
            Factor::of(vec![Method::SoftOtp]),
        ],
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
    app.factors[1].if_enrolled = true;
    s.admin().put(&actor(), app).await.unwrap();
    s.set(json!({"validate_application": "vpn"})).await;
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", "bob-password")])
            .await
            .0,
        "ACCEPT",
        "no token: the password is enough"
    );
    for narrowed in [&[("serial", "NOSUCH0001")][..], &[("type", "hotp")][..]] {
        let mut params = vec![("user", "alice"), ("pass", "alice-password")];
        params.extend_from_slice(narrowed);
        let (auth, body) = s.check(&params).await;
        assert_ne!(auth, "ACCEPT", "{narrowed:?}: {body}");
    }
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "CHALLENGE"
    );
    s.set(json!({"forced_mfa": true})).await;
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", "bob-password")])
            .await
            .0,
        "REJECT",
        "forced: bob has nothing to answer with"
    );
    s.stop().await;
}
