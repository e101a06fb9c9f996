//! The attacker's tests: what an attack run against Tessera tried, through the real doors
//! (the validate API, RADIUS with pyrad, the OAuth password grant, `/auth`), on both backends.
//! Each failed before the fix it names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor, pyrad};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tessera_core::admin::NewApiClient;
use tessera_core::model::{AdminRole, ApiClientKind, AuditRecord, Method, RadiusClient};
use tessera_core::store::AuditStore;

const SECRET: &str = "s3cret-for-the-tests";
const WRONG: usize = 60;

/// Posts every form at once (a task each); the answers in the order of the forms.
async fn burst(s: &TestServer, path: &str, forms: Vec<Vec<(String, String)>>) -> Vec<(u16, Value)> {
    let mut tasks = Vec::new();
    for form in forms {
        let (http, url) = (s.http.clone(), format!("{}{path}", s.url));
        tasks.push(tokio::spawn(async move {
            let res = http.post(url).form(&form).send().await.unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// `WRONG` wrong passwords and then the right one, as forms of `user_key`/`pass_key`.
fn wrong_then_right(
    user_key: &str,
    user: &str,
    pass_key: &str,
    right: &str,
) -> Vec<Vec<(String, String)>> {
    let mut forms: Vec<Vec<(String, String)>> = (0..WRONG)
        .map(|i| {
            vec![
                (user_key.into(), user.into()),
                (pass_key.into(), format!("wrong-guess-{i}")),
            ]
        })
        .collect();
    forms.push(vec![
        (user_key.into(), user.into()),
        (pass_key.into(), right.into()),
    ]);
    forms
}

/// `k` of a reason ending in "(attempt k of max)".
fn attempt(reason: &str, max: u32) -> Option<u32> {
    let rest = reason.rsplit_once("(attempt ")?.1;
    let (k, of) = rest.strip_suffix(')')?.split_once(" of ")?;
    assert_eq!(of.parse::<u32>().ok(), Some(max), "{reason}");
    k.parse().ok()
}

/// The budget of `max` held against a burst whose records are `records` (the burst's only):
/// every answer checked took one of the budget's attempts; when the right answer was refused,
/// exactly `max` wrong ones were checked (each attempt once) and every other answer was refused
/// unchecked; when it passed, it had taken one of the attempts (at most `max` - 1 wrong ones
/// before it, at most `max` after it, as the count starts again after a success).
fn assert_budget_held(records: &[AuditRecord], max: u32, right_passed: bool, locked_reason: &str) {
    let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(records.len(), WRONG + 1, "{reasons:?}");
    // What the attack run saw: every answer checked. The budget allows `max` (twice, at most,
    // when the right one passed and cleared the count).
    let evaluated = records
        .iter()
        .filter(|r| r.result == "reject" && !r.reason.starts_with(locked_reason))
        .count();
    let bound = if right_passed {
        2 * max as usize - 1
    } else {
        max as usize
    };
    assert!(
        evaluated <= bound,
        "{evaluated} answers checked: {reasons:?}"
    );
    let mut checked: Vec<u32> = records
        .iter()
        .filter(|r| r.result == "reject" && !r.reason.starts_with(locked_reason))
        .map(|r| attempt(&r.reason, max).unwrap_or_else(|| panic!("{}", r.reason)))
        .collect();
    checked.sort_unstable();
    let refused = records
        .iter()
        .filter(|r| r.reason.starts_with(locked_reason))
        .count();
    let passed = records.iter().filter(|r| r.result != "reject").count();
    assert_eq!(passed, usize::from(right_passed), "{reasons:?}");
    assert_eq!(checked.len() + refused + passed, WRONG + 1, "{reasons:?}");
    if right_passed {
        assert!(checked.len() < 2 * max as usize, "{reasons:?}");
        for k in 1..=max {
            assert!(
                checked.iter().filter(|c| **c == k).count() <= 2,
                "{reasons:?}"
            );
        }
    } else {
        assert_eq!(checked, (1..=max).collect::<Vec<u32>>(), "{reasons:?}");
    }
}

async fn records_of(s: &TestServer, action: &str, user: &str) -> Vec<AuditRecord> {
    s.audit(action)
        .await
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(user))
        .collect()
}

both_backends!(
    validate_api_bursts_get_no_more_checks_than_the_lockout_allows,
    radius_bursts_get_no_more_checks_than_the_lockout_allows,
    password_grant_bursts_get_no_more_checks_than_the_lockout_allows,
    administrator_sign_in_bursts_get_no_more_checks_than_the_lockout_allows,
    locks_are_lifted_by_administrators_and_counted_per_address,
    names_with_control_characters_are_refused_and_lock_keys_never_meet,
    transactions_are_finished_only_where_they_started,
    applications_take_users_of_their_realms_only,
    a_resync_beside_a_login_never_makes_a_used_code_valid_again,
    scopes_are_enforced_and_applications_may_require_an_api_client,
    a_burst_of_otps_gets_no_more_checks_than_the_token_allows,
    pin_alone_and_passthru_bursts_get_no_more_checks_than_the_lockout_allows,
    a_burst_of_one_refresh_token_buys_at_most_one_renewal_and_revokes_the_rest,
);

/// Refresh token rotation under a race (RFC 9700 §4.14.2): twenty copies of one refresh token
/// sent at once renew it at most once; the copies that come after are taken for theft and
/// revoke every refresh token of the client for the user — the one the winner was just given
/// too, whichever finished first.
async fn a_burst_of_one_refresh_token_buys_at_most_one_renewal_and_revokes_the_rest(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"public_url": s.url, "regenerate_token": true}))
        .await;
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "portal".into(),
                kind: ApiClientKind::User,
                application: Some("pw".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (id, secret) = (
        created.client.client_id.clone(),
        created.client_secret.as_deref().unwrap().to_string(),
    );
    let client = |mut form: Vec<(String, String)>| {
        form.push(("client_id".into(), id.clone()));
        form.push(("client_secret".into(), secret.clone()));
        form
    };
    let signed_in = burst(
        &s,
        "/oauth/token",
        vec![client(vec![
            ("grant_type".into(), "password".into()),
            ("username".into(), "alice".into()),
            ("password".into(), "alice-password".into()),
        ])],
    )
    .await;
    assert_eq!(signed_in[0].0, 200, "{signed_in:?}");
    let refresh = signed_in[0].1["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let forms = (0..20)
        .map(|_| {
            client(vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), refresh.clone()),
            ])
        })
        .collect();
    let answers = burst(&s, "/oauth/token", forms).await;
    let renewed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert!(renewed.len() <= 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(status, _)| *status != 200)
            .all(|(status, body)| *status == 400 && body["error"] == "invalid_grant"),
        "{answers:?}"
    );
    let reused = s.audit("refresh_token_reused").await;
    assert!(!reused.is_empty(), "{answers:?}");
    // Whatever the winner was given no longer renews.
    for (_, body) in renewed {
        let again = burst(
            &s,
            "/oauth/token",
            vec![client(vec![
                ("grant_type".into(), "refresh_token".into()),
                (
                    "refresh_token".into(),
                    body["refresh_token"].as_str().unwrap().to_string(),
                ),
            ])],
        )
        .await;
        assert_eq!(again[0].0, 400, "{again:?}");
    }
    s.stop().await;
}

/// The paths issue 16 added check secrets too: the PIN alone under challenge-response, the
/// user store's password under passthru. Sixty wrong answers and the right one at once get no
/// more checks than the account's budget; the right one passes only within it.
async fn pin_alone_and_passthru_bursts_get_no_more_checks_than_the_lockout_allows(b: Backend) {
    let s = password_server(b).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Hotp,
        "OATHCR",
        Some("4711"),
    )
    .await;
    s.use_app("pi-cr", &[&[Method::SoftOtp]]).await;
    let mut app: tessera_core::model::Application = s.admin().get("pi-cr").unwrap();
    app.challenge_response = true;
    s.admin().put(&actor(), app).await.unwrap();
    let answers = burst(
        &s,
        "/validate/check",
        wrong_then_right("user", "alice", "pass", "4711"),
    )
    .await;
    let passed = answers.last().unwrap().1["result"]["authentication"] == "CHALLENGE";
    assert_budget_held(
        &records_of(&s, "authenticate", "alice").await,
        5,
        passed,
        "account locked",
    );
    // bob has no token: under passthru his password is checked, within the same budget.
    s.use_app("pi-pt", &[&[Method::SoftOtp]]).await;
    let mut app: tessera_core::model::Application = s.admin().get("pi-pt").unwrap();
    app.passthru = true;
    s.admin().put(&actor(), app).await.unwrap();
    let answers = burst(
        &s,
        "/validate/check",
        wrong_then_right("user", "bob", "pass", "bob-password"),
    )
    .await;
    let passed = answers.last().unwrap().1["result"]["authentication"] == "ACCEPT";
    assert_budget_held(
        &records_of(&s, "authenticate", "bob").await,
        5,
        passed,
        "account locked",
    );
    s.stop().await;
}

/// Adds the RADIUS client `vpn` (127.0.0.1, [`SECRET`]) for `application`: the server's
/// authentication and accounting addresses.
async fn radius_vpn(s: &TestServer, application: &str) -> (SocketAddr, SocketAddr) {
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "vpn", "device_type": "vpn", "nas_ip": ["127.0.0.1"], "secret": SECRET,
        "application": application
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    let r = s.running.as_ref().unwrap();
    (r.radius_auth_addr.unwrap(), r.radius_acct_addr.unwrap())
}

async fn password_server(b: Backend) -> TestServer {
    let s = TestServer::start(b, Some(1_800_000_000)).await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;
    s.use_app("pw", &[&[Method::Password]]).await;
    s
}

/// Lockout race (attack run, high): 59 wrong passwords and the right one sent at once were all
/// checked, and the right one passed against a budget of 5.
async fn validate_api_bursts_get_no_more_checks_than_the_lockout_allows(b: Backend) {
    let s = password_server(b).await;
    // Wrong passwords only: exactly the budget is checked; then even the right one is refused.
    let forms: Vec<Vec<(String, String)>> = wrong_then_right("user", "bob", "pass", "x")
        .into_iter()
        .take(WRONG)
        .collect();
    let answers = burst(&s, "/validate/check", forms).await;
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == 200 && body["result"]["authentication"] == "REJECT")
    );
    let records = records_of(&s, "authenticate", "bob").await;
    let checked = records
        .iter()
        .filter(|r| r.reason.starts_with("wrong password"))
        .count();
    assert_eq!(checked, 5, "{records:?}");
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", "bob-password")])
            .await
            .0,
        "REJECT"
    );
    // Wrong ones and the right one at once.
    let answers = burst(
        &s,
        "/validate/check",
        wrong_then_right("user", "alice", "pass", "alice-password"),
    )
    .await;
    let right = answers.last().unwrap();
    let passed = right.1["result"]["authentication"] == "ACCEPT";
    assert_budget_held(
        &records_of(&s, "authenticate", "alice").await,
        5,
        passed,
        "account locked",
    );
    s.stop().await;
}

async fn radius_bursts_get_no_more_checks_than_the_lockout_allows(b: Backend) {
    let s = password_server(b).await;
    // Password, then an OTP in a second round: the right password gets Access-Challenge.
    s.use_app("vpn-2fa", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    s.enroll("alice", tessera_core::model::TokenKind::Hotp, "OATH1", None)
        .await;
    let (auth, acct) = radius_vpn(&s, "vpn-2fa").await;
    let mut passwords: Vec<String> = (0..WRONG).map(|i| format!("wrong-guess-{i}")).collect();
    passwords.push("alice-password".into());
    let out = tokio::task::spawn_blocking(move || {
        pyrad(
            auth,
            acct,
            json!([{"op": "burst", "user": "alice", "passwords": passwords, "secret": SECRET}]),
        )
    })
    .await
    .unwrap();
    let codes: Vec<u64> = out[0]["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().expect("every request answered"))
        .collect();
    // Access-Reject for every wrong one; the right one Access-Challenge or Access-Reject.
    assert!(codes[..WRONG].iter().all(|c| *c == 3), "{codes:?}");
    let passed = codes[WRONG] == 11;
    assert!(passed || codes[WRONG] == 3, "{codes:?}");
    assert_budget_held(
        &records_of(&s, "authenticate", "alice").await,
        5,
        passed,
        "account locked",
    );
    s.stop().await;
}

async fn password_grant_bursts_get_no_more_checks_than_the_lockout_allows(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"public_url": s.url})).await;
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "portal".into(),
                kind: ApiClientKind::User,
                application: Some("pw".into()),
                scopes: vec!["validate".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (id, secret) = (
        created.client.client_id.clone(),
        created.client_secret.as_deref().unwrap().to_string(),
    );
    let refused = burst(
        &s,
        "/oauth/token",
        vec![vec![
            ("grant_type".into(), "password".into()),
            ("client_id".into(), id.clone()),
            ("client_secret".into(), secret.clone()),
            ("username".into(), "ali\u{1}ce".into()),
            ("password".into(), "x".into()),
        ]],
    )
    .await;
    assert_eq!(refused[0].0, 400, "{refused:?}");
    assert_eq!(refused[0].1["error"], "invalid_request", "{refused:?}");
    let forms = wrong_then_right("username", "alice", "password", "alice-password")
        .into_iter()
        .map(|mut f| {
            f.push(("grant_type".into(), "password".into()));
            f.push(("client_id".into(), id.clone()));
            f.push(("client_secret".into(), secret.clone()));
            f
        })
        .collect();
    let answers = burst(&s, "/oauth/token", forms).await;
    assert!(
        answers[..WRONG]
            .iter()
            .all(|(status, body)| *status == 400 && body["error"] == "invalid_grant"),
        "{answers:?}"
    );
    let passed = answers[WRONG].0 == 200;
    assert!(passed || answers[WRONG].0 == 400, "{:?}", answers[WRONG]);
    assert_budget_held(
        &records_of(&s, "authenticate", "alice").await,
        5,
        passed,
        "account locked",
    );
    s.stop().await;
}

async fn administrator_sign_in_bursts_get_no_more_checks_than_the_lockout_allows(b: Backend) {
    let s = TestServer::start(b, Some(1_800_000_000)).await;
    let password = "a-long-admin-password";
    s.admin()
        .create_admin(&actor(), "root", password, AdminRole::Admin)
        .await
        .unwrap();
    let answers = burst(
        &s,
        "/auth",
        wrong_then_right("username", "root", "password", password),
    )
    .await;
    assert!(
        answers[..WRONG].iter().all(|(status, _)| *status == 401),
        "{answers:?}"
    );
    let passed = answers[WRONG].0 == 200;
    assert!(passed || answers[WRONG].0 == 401, "{:?}", answers[WRONG]);
    let records: Vec<AuditRecord> = s
        .audit("admin_login")
        .await
        .into_iter()
        .filter(|r| r.actor == "admin:root")
        .map(|mut r| {
            if r.result == "ok" {
                r.result = "accept".into();
            }
            r
        })
        .collect();
    assert_budget_held(&records, 5, passed, "locked after");
    s.stop().await;
}

/// A `/validate/check` from the local address `from` (127.0.0.0/8 all reach the server).
async fn check_from(s: &TestServer, from: &str, user: &str, pass: &str) -> String {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let body: Value = http
        .post(format!("{}/validate/check", s.url))
        .form(&[("user", user), ("pass", pass)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["result"]["authentication"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Lockout as a denial of service (attack run, medium): anyone could lock any user or
/// administrator with five requests, and nothing unlocked them.
async fn locks_are_lifted_by_administrators_and_counted_per_address(b: Backend) {
    let s = password_server(b).await;
    let api = common::Api {
        s: &s,
        token: s.admin_token("ada", AdminRole::Admin).await,
    };
    for _ in 0..5 {
        assert_eq!(
            check_from(&s, "127.0.0.1", "alice", "wrong").await,
            "REJECT"
        );
    }
    assert_eq!(
        check_from(&s, "127.0.0.1", "alice", "alice-password").await,
        "REJECT"
    );
    let (status, body) = api.get("/users/alice/lockout").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_locked"], true, "{body}");
    assert_eq!(body["cleared"][0]["password_fails"], 5, "{body}");
    assert_eq!(body["cleared"][0]["budget"], "sign-ins", "{body}");
    // An auditor may look, not unlock.
    let auditor = common::Api {
        s: &s,
        token: s.admin_token("audrey", AdminRole::Auditor).await,
    };
    assert_eq!(auditor.get("/users/alice/lockout").await.0, 200);
    assert_eq!(auditor.post("/users/alice/unlock", json!({})).await.0, 403);
    let (status, body) = api.post("/users/alice/unlock", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_locked"], true, "{body}");
    assert_eq!(
        check_from(&s, "127.0.0.1", "alice", "alice-password").await,
        "ACCEPT"
    );
    let unlock = &s.audit("user_unlock").await[0];
    assert_eq!(unlock.actor, "admin:ada");
    assert!(
        unlock
            .reason
            .starts_with("unlocked (sign-ins of alice: 5 password and 0 code failures, locked"),
        "{unlock:?}"
    );
    // The CLI too, and for a name nobody has (an attacker may lock those as well).
    for _ in 0..5 {
        check_from(&s, "127.0.0.1", "nobody", "x").await;
    }
    let out = common::tessera_ok(&s, &["user", "unlock", "nobody"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("'nobody' in realm 'default' was locked and is unlocked now"),
        "{text}"
    );
    let out = common::tessera_ok(&s, &["user", "lockout", "nobody"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no failed attempts on record"),
        "{out:?}"
    );

    // Counted per client address: one address locks the user out for itself only.
    s.set(json!({"lock_per_client_address": true, "lock_all_addresses_attempts": 8}))
        .await;
    for _ in 0..5 {
        check_from(&s, "127.0.0.2", "bob", "wrong").await;
    }
    assert_eq!(
        check_from(&s, "127.0.0.2", "bob", "bob-password").await,
        "REJECT"
    );
    assert_eq!(
        check_from(&s, "127.0.0.1", "bob", "bob-password").await,
        "ACCEPT"
    );
    // All addresses together lock the account everywhere after lock_all_addresses_attempts.
    for _ in 0..5 {
        check_from(&s, "127.0.0.3", "bob", "wrong").await;
    }
    for _ in 0..3 {
        check_from(&s, "127.0.0.4", "bob", "wrong").await;
    }
    assert_eq!(
        check_from(&s, "127.0.0.1", "bob", "bob-password").await,
        "REJECT"
    );
    let (_, body) = api.get("/users/bob/lockout").await;
    let budgets: Vec<&str> = body["cleared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["budget"].as_str().unwrap())
        .collect();
    assert_eq!(
        budgets,
        [
            "sign-ins",
            "sign-ins from 127.0.0.2",
            "sign-ins from 127.0.0.3",
            "sign-ins from 127.0.0.4"
        ],
        "{body}"
    );
    let (_, body) = api.post("/users/bob/unlock", json!({})).await;
    assert_eq!(body["was_locked"], true, "{body}");
    assert_eq!(
        check_from(&s, "127.0.0.2", "bob", "bob-password").await,
        "ACCEPT"
    );

    // Administrators: five wrong passwords lock the name; `tessera admin unlock` lifts it.
    let sign_in = |password: &'static str| {
        let s = &s;
        async move {
            s.post("/auth", &[("username", "ada"), ("password", password)])
                .await
                .0
        }
    };
    for _ in 0..5 {
        assert_eq!(sign_in("wrong").await, 401);
    }
    assert_eq!(sign_in("a-long-admin-password").await, 401);
    let (status, body) = auditor.get("/admins/ada/lockout").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_locked"], true, "{body}");
    let out = common::tessera_ok(&s, &["--json", "admin", "unlock", "ada"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["was_locked"], true, "{report}");
    assert_eq!(sign_in("a-long-admin-password").await, 200);
    assert_eq!(s.audit("admin_unlock").await.len(), 1);
    // And through the admin API (an earlier session of ada's still works while the name is
    // locked: the lock stops sign-ins).
    for _ in 0..5 {
        assert_eq!(sign_in("wrong").await, 401);
    }
    assert_eq!(auditor.post("/admins/ada/unlock", json!({})).await.0, 403);
    let (status, body) = api.post("/admins/ada/unlock", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_locked"], true, "{body}");
    assert_eq!(sign_in("a-long-admin-password").await, 200);
    let refused = common::tessera(&s, &["admin", "unlock", "nobody"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("administrator 'nobody' not found"),
        "{refused:?}"
    );
    s.stop().await;
}

/// Lock keys were strings joined with U+001F (attack run, low): the login `dave\x1fmfa` locked
/// dave's MFA step, and a realm named `admin` shared keys with administrator sign-ins.
async fn names_with_control_characters_are_refused_and_lock_keys_never_meet(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"mfa_account_locking": true, "mfa_max_otp_attempts": 3}))
        .await;
    s.use_app("pw-otp", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    s.add_user("dave", Some("dave-password")).await;
    s.enroll(
        "dave",
        tessera_core::model::TokenKind::Hotp,
        "OATHDAVE",
        None,
    )
    .await;
    let evil = "dave\u{1f}mfa";
    // The validate API refuses the name as bad input; nothing is looked up or counted.
    let (status, body) = s
        .post("/validate/check", &[("user", evil), ("pass", "x")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["result"]["error"]["code"], 905, "{body}");
    let (status, body) = s
        .post(
            "/validate/check",
            &[("user", "dave"), ("realm", "a\nb"), ("pass", "x")],
        )
        .await;
    assert_eq!(
        (status, body["result"]["error"]["code"].as_u64()),
        (reqwest::StatusCode::BAD_REQUEST, Some(905))
    );
    // RADIUS has no error to answer: the engine refuses the name (Access-Reject), counts
    // nothing, and records it escaped.
    let (auth, acct) = radius_vpn(&s, "pw-otp").await;
    let steps: Vec<Value> = (0..4)
        .map(|_| json!({"op": "auth", "user": evil, "password": "dave-password", "secret": SECRET}))
        .collect();
    let out = tokio::task::spawn_blocking(move || pyrad(auth, acct, json!(steps)))
        .await
        .unwrap();
    assert!(out.iter().all(|r| r["code"] == 3), "{out:?}");
    let refused = &s.audit("authenticate").await[0];
    assert_eq!(refused.user.as_deref(), Some("dave\\u{1f}mfa"));
    assert_eq!(
        refused.reason,
        "the login or realm name holds control characters or is too long"
    );
    // dave's MFA step is not locked: password, then the OTP.
    let (auth_result, body) = s
        .check(&[("user", "dave"), ("pass", "dave-password")])
        .await;
    assert_eq!(auth_result, "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (auth_result, body) = s
        .check(&[
            ("user", "dave"),
            ("transaction_id", &tx),
            ("pass", &s.hotp(0)),
        ])
        .await;
    assert_eq!(auth_result, "ACCEPT", "{body}");
    // /auth refuses such names too (and the password grant: see the burst test above).
    let (status, body) = s
        .post("/auth", &[("username", "ro\u{0}ot"), ("password", "x")])
        .await;
    assert_eq!(status, 400, "{body}");

    // A realm named like the administrators' keys: its users' failures lock only them.
    s.admin()
        .put(
            &actor(),
            tessera_core::model::Realm {
                name: "admin".into(),
                sources: vec!["local".into()],
                description: String::new(),
            },
        )
        .await
        .unwrap();
    s.add_user("root", Some("root-user-password")).await;
    s.use_app("pw", &[&[Method::Password]]).await;
    s.admin()
        .create_admin(&actor(), "root", "a-long-admin-password", AdminRole::Admin)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            s.check(&[("user", "root@admin"), ("pass", "wrong")])
                .await
                .0,
            "REJECT"
        );
    }
    assert_eq!(
        s.check(&[("user", "root@admin"), ("pass", "root-user-password")])
            .await
            .0,
        "REJECT",
        "the user root of realm admin is locked"
    );
    let (status, body) = s
        .post(
            "/auth",
            &[("username", "root"), ("password", "a-long-admin-password")],
        )
        .await;
    assert_eq!(status, 200, "the administrator root is not: {body}");
    s.stop().await;
}

/// The median of the times (milliseconds) of `tries` rounds of `cases`, each round trying every
/// case once, in turn, so that what else the machine does weighs on all cases alike.
async fn medians(s: &TestServer, cases: &[(&str, Vec<(&str, &str)>)], tries: usize) -> Vec<f64> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..tries {
        for (i, (_, form)) in cases.iter().enumerate() {
            let started = std::time::Instant::now();
            let (auth, body) = s.check(form).await;
            times[i].push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(auth, "REJECT", "{body}");
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// Enumeration by timing (attack run, medium): with a PIN typed, a known user without a token
/// answered in ~1.7 ms and an unknown user in ~22 ms; an unknown serial in 2 ms, a real one in
/// 28 ms. Every "no such user or token" answer now costs one hash, as a real check does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_serials_answer_as_slowly_as_real_ones() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    // Locks would end the hashing after five tries; the times are what is measured here.
    s.set(json!({"account_locking": false, "argon2_memory_kib": 19456, "argon2_iterations": 1}))
        .await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTPALICE",
        Some("1234"),
    )
    .await;
    let pin_otp = "9999123456";
    // PIN + OTP (the default application).
    s.use_app("pin-otp", &[&[Method::SoftOtp]]).await;
    let cases = [
        ("unknown user", vec![("user", "nobody"), ("pass", pin_otp)]),
        (
            "user without a token",
            vec![("user", "bob"), ("pass", pin_otp)],
        ),
        ("wrong PIN", vec![("user", "alice"), ("pass", pin_otp)]),
        (
            "unknown serial",
            vec![("serial", "NOSUCHSERIAL"), ("pass", pin_otp)],
        ),
        (
            "real serial, wrong PIN",
            vec![("serial", "TOTPALICE"), ("pass", pin_otp)],
        ),
    ];
    let m = medians(&s, &cases, 100).await;
    assert_within_noise(&cases.map(|c| c.0), &m);
    // Password and OTP in one field.
    s.use_app("pw-otp", &[&[Method::PasswordOtp]]).await;
    let pass = "not-the-password123456";
    let cases = [
        ("unknown user", vec![("user", "nobody"), ("pass", pass)]),
        (
            "user without a token",
            vec![("user", "bob"), ("pass", pass)],
        ),
        ("wrong password", vec![("user", "alice"), ("pass", pass)]),
    ];
    let m = medians(&s, &cases, 100).await;
    assert_within_noise(&cases.map(|c| c.0), &m);
    // Challenge-response also tries the whole answer as the PIN: a second hash for everyone,
    // with a PIN and code typed or a PIN alone.
    s.use_app("pi-cr", &[&[Method::SoftOtp]]).await;
    let mut app: tessera_core::model::Application = s.admin().get("pi-cr").unwrap();
    app.challenge_response = true;
    s.admin().put(&actor(), app).await.unwrap();
    for pass in [pin_otp, "9999"] {
        let cases = [
            ("unknown user", vec![("user", "nobody"), ("pass", pass)]),
            (
                "user without a token",
                vec![("user", "bob"), ("pass", pass)],
            ),
            ("wrong PIN", vec![("user", "alice"), ("pass", pass)]),
        ];
        let m = medians(&s, &cases, 100).await;
        assert_within_noise(&cases.map(|c| c.0), &m);
    }
    s.stop().await;
}

/// The medians differ by less than half of the largest: a missing hash (here about 10 ms, the
/// rest of a request well under 1 ms) makes a path several times as fast.
fn assert_within_noise(names: &[&str], medians: &[f64]) {
    let max = medians.iter().copied().fold(f64::MIN, f64::max);
    let min = medians.iter().copied().fold(f64::MAX, f64::min);
    let shown: Vec<String> = names
        .iter()
        .zip(medians)
        .map(|(n, m)| format!("{n}: {m:.2} ms"))
        .collect();
    assert!(min > max / 2.0, "medians differ: {shown:?}");
    eprintln!("medians: {shown:?}");
}

/// The claims of a JWT (unverified: the OAuth tests check signatures).
fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(part.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

/// Transactions not bound to where they started (attack run, low): a RADIUS `State` or an
/// OAuth `mfa_tx` could be finished at `/validate/check`, escaping the OAuth session's retry
/// budget.
async fn transactions_are_finished_only_where_they_started(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"public_url": s.url})).await;
    s.use_app("vpn-2fa", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    s.enroll("alice", tessera_core::model::TokenKind::Hotp, "OATH1", None)
        .await;
    let (auth, acct) = radius_vpn(&s, "vpn-2fa").await;
    let first =
        json!([{"op": "auth", "user": "alice", "password": "alice-password", "secret": SECRET}]);
    let out = tokio::task::spawn_blocking(move || pyrad(auth, acct, first))
        .await
        .unwrap();
    assert_eq!(out[0]["code"], 11, "{out:?}");
    let state = out[0]["state"].as_str().unwrap().to_string();
    let tx = String::from_utf8(data_encoding::HEXLOWER.decode(state.as_bytes()).unwrap()).unwrap();
    // The RADIUS login's second leg at the validate API: refused, and the OTP not spent.
    let (result, body) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &s.hotp(0)),
        ])
        .await;
    assert_eq!(result, "REJECT", "{body}");
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "unknown, expired or finished transaction: the login started at radius (client vpn) \
         for application vpn-2fa"
    );
    // Another NAS (127.0.0.2, a client of its own for the same application) cannot finish it.
    let other_nas: RadiusClient = serde_json::from_value(json!({
        "name": "vpn-b", "device_type": "vpn", "nas_ip": ["127.0.0.2"], "secret": SECRET,
        "application": "vpn-2fa"
    }))
    .unwrap();
    s.admin().put(&actor(), other_nas).await.unwrap();
    let stolen = json!([{"op": "auth", "user": "alice", "password": s.hotp(0), "secret": SECRET,
        "state": state, "source": "127.0.0.2"}]);
    let out = tokio::task::spawn_blocking(move || pyrad(auth, acct, stolen))
        .await
        .unwrap();
    assert_eq!(out[0]["code"], 3, "{out:?}");
    assert!(
        s.audit("authenticate").await[0]
            .reason
            .ends_with("the login started at radius (client vpn) for application vpn-2fa")
    );
    let second = json!([{"op": "auth", "user": "alice", "password": s.hotp(0), "secret": SECRET,
        "state": state}]);
    let out = tokio::task::spawn_blocking(move || pyrad(auth, acct, second))
        .await
        .unwrap();
    assert_eq!(out[0]["code"], 2, "the RADIUS client finishes it: {out:?}");

    // An OAuth MFA step (whose session counts its wrong answers) at the validate API.
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "portal".into(),
                kind: ApiClientKind::User,
                application: Some("vpn-2fa".into()),
                scopes: vec!["validate".into(), "mfa".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let grant = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .basic_auth(
            &created.client.client_id,
            Some(created.client_secret.as_deref().unwrap().as_str()),
        )
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 200);
    let body: Value = grant.json().await.unwrap();
    let pending = body["access_token"].as_str().unwrap().to_string();
    let mfa_tx = claims_of(&pending)["mfa_tx"].as_str().unwrap().to_string();
    let (result, _) = s
        .check(&[
            ("user", "alice"),
            ("transaction_id", &mfa_tx),
            ("pass", &s.hotp(1)),
        ])
        .await;
    assert_eq!(result, "REJECT");
    assert!(
        s.audit("authenticate").await[0]
            .reason
            .ends_with("the login started at api (client portal) for application vpn-2fa"),
    );
    let finished = s
        .http
        .post(format!("{}/oauth/mfa", s.url))
        .bearer_auth(&pending)
        .form(&[("otp", s.hotp(1))])
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 200, "the OAuth client finishes it");

    // At the validate API, a login started with an agent's token is finished with it only.
    s.set(json!({"validate_application": "vpn-2fa"})).await;
    let mut tokens = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let agent = api_client(&s, name, ApiClientKind::Agent, None, &[]).await;
        let (status, body) = as_client(
            &s,
            "/oauth/token",
            &agent,
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_string());
    }
    let (_, body) = with_bearer(
        &s,
        "/validate/check",
        &tokens[0],
        &[("user", "alice"), ("pass", "alice-password")],
    )
    .await;
    assert_eq!(body["result"]["authentication"], "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = [
        ("user", "alice"),
        ("transaction_id", tx.as_str()),
        ("pass", ""),
    ];
    let code = s.hotp(2);
    let answer = [answer[0], answer[1], ("pass", code.as_str())];
    let (_, body) = with_bearer(&s, "/validate/check", &tokens[1], &answer).await;
    assert_eq!(body["result"]["authentication"], "REJECT", "{body}");
    assert!(
        s.audit("authenticate").await[0]
            .reason
            .ends_with("the login started at validate (client agent-a) for application vpn-2fa")
    );
    assert_eq!(s.check(&answer).await.0, "REJECT", "nor without a token");
    let (_, body) = with_bearer(&s, "/validate/check", &tokens[0], &answer).await;
    assert_eq!(body["result"]["authentication"], "ACCEPT", "{body}");
    s.stop().await;
}

/// Applications were not tied to realms (attack run, low): `user@otherrealm` signed in to any
/// application.
async fn applications_take_users_of_their_realms_only(b: Backend) {
    let s = password_server(b).await;
    let decl: tessera_core::admin::Declaration = serde_json::from_value(json!({
        "user_source": [{"name": "partners-src", "type": "local"}],
        "realm": [{"name": "partners", "sources": ["partners-src"]}],
        "application": [{"name": "staff-vpn", "realms": ["default"],
                         "factors": [{"methods": ["password"]}]}],
        "radius_client": [{"name": "vpn", "device_type": "vpn", "nas_ip": ["127.0.0.1"],
                           "secret": SECRET, "application": "staff-vpn"}],
        "settings": {"validate_application": "staff-vpn"}
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
    s.admin()
        .create_user(
            &actor(),
            tessera_core::admin::NewUserInput {
                username: "pat".into(),
                source: Some("partners-src".into()),
                password: Some(zeroize::Zeroizing::new("pat-password".into())),
                enabled: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "alice-password")])
            .await
            .0,
        "ACCEPT"
    );
    for user in ["pat@partners", "nobody@partners"] {
        let (result, body) = s.check(&[("user", user), ("pass", "pat-password")]).await;
        assert_eq!(result, "REJECT", "{body}");
        assert_eq!(
            s.audit("authenticate").await[0].reason,
            "the application does not take users of this realm"
        );
    }
    // Refused before any factor: nothing counted against pat.
    let report = s
        .admin()
        .user_lockout("pat", Some("partners"))
        .await
        .unwrap();
    assert!(report.cleared.is_empty(), "{report:?}");
    // RADIUS alike.
    let r = s.running.as_ref().unwrap();
    let (auth, acct) = (r.radius_auth_addr.unwrap(), r.radius_acct_addr.unwrap());
    let steps = json!([{"op": "auth", "user": "pat@partners", "password": "pat-password",
        "secret": SECRET}]);
    let out = tokio::task::spawn_blocking(move || pyrad(auth, acct, steps))
        .await
        .unwrap();
    assert_eq!(out[0]["code"], 3, "{out:?}");
    // The CLI sets the list: a realm that does not exist is refused, --any-realm lifts it.
    let refused = common::tessera(
        &s,
        &[
            "app",
            "set",
            "staff-vpn",
            "--factor",
            "password",
            "--realm",
            "nope",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("realm 'nope' does not exist"),
        "{refused:?}"
    );
    let out = common::tessera_ok(
        &s,
        &[
            "app",
            "set",
            "staff-vpn",
            "--factor",
            "password",
            "--any-realm",
        ],
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("realms") && l.trim_end().ends_with(" any")),
        "{shown}"
    );
    // The running server takes the change (it reloads within a second).
    let mut result = String::new();
    for _ in 0..100 {
        result = s
            .check(&[("user", "pat@partners"), ("pass", "pat-password")])
            .await
            .0;
        if result == "ACCEPT" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(result, "ACCEPT");
    s.stop().await;
}

/// The admin resync's counter write was unconditional (attack run, low): a resync running
/// beside a login that accepted a later code moved the counter back, and the used code was
/// valid again.
async fn a_resync_beside_a_login_never_makes_a_used_code_valid_again(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"account_locking": false})).await;
    s.use_app("otp", &[&[Method::SoftOtp]]).await;
    let api = common::Api {
        s: &s,
        token: s.admin_token("ada", AdminRole::Admin).await,
    };
    let mut accepted_rounds = 0;
    for round in 0..15u64 {
        let serial = format!("OATHRACE{round}");
        s.enroll("alice", tessera_core::model::TokenKind::Hotp, &serial, None)
            .await;
        // Other tokens of alice's are out of the way.
        if round > 0 {
            s.admin()
                .delete_token(&actor(), &format!("OATHRACE{}", round - 1))
                .await
                .unwrap();
        }
        let body = json!({"otp1": s.hotp(2), "otp2": s.hotp(3)});
        let path = format!("/tokens/{serial}/resync");
        let used = s.hotp(5);
        let form = [("user", "alice"), ("pass", used.as_str())];
        let (resync, login) = tokio::join!(api.post(&path, body), s.check(&form));
        let accepted = login.0 == "ACCEPT";
        accepted_rounds += usize::from(accepted);
        let t = s.admin().get_token(&serial).await.unwrap();
        if accepted {
            assert!(
                t.counter >= 6,
                "round {round}: counter moved back to {}",
                t.counter
            );
            assert_eq!(
                s.check(&[("user", "alice"), ("pass", &used)]).await.0,
                "REJECT",
                "round {round}: the used code is spent"
            );
        }
        assert!(
            resync.0 == 200 || resync.0 == 400,
            "round {round}: {resync:?}"
        );
    }
    assert!(accepted_rounds > 0, "no round had the login accepted");
    s.stop().await;
}

async fn api_client(
    s: &TestServer,
    name: &str,
    kind: ApiClientKind,
    app: Option<&str>,
    scopes: &[&str],
) -> (String, String) {
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: name.into(),
                kind,
                application: app.map(str::to_string),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (
        created.client.client_id.clone(),
        created.client_secret.as_deref().unwrap().to_string(),
    )
}

/// POST with HTTP Basic client authentication; (status, JSON).
async fn as_client(
    s: &TestServer,
    path: &str,
    (id, secret): &(String, String),
    form: &[(&str, &str)],
) -> (u16, Value) {
    let res = s
        .http
        .post(format!("{}{path}", s.url))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST with a bearer token; (status, JSON).
async fn with_bearer(
    s: &TestServer,
    path: &str,
    token: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let res = s
        .http
        .post(format!("{}{path}", s.url))
        .bearer_auth(token)
        .form(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Scopes gated nothing but introspection, and `/validate/*` took no token at all (attack run,
/// low), while seed 000's agents call with an API client's bearer token.
async fn scopes_are_enforced_and_applications_may_require_an_api_client(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"public_url": s.url})).await;
    s.use_app("win-logon", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Hotp,
        "OATHWIN",
        None,
    )
    .await;
    s.use_app("pw", &[&[Method::Password]]).await;
    // A user client without `validate` signs nobody in; without `mfa` it answers no MFA step.
    let no_validate =
        api_client(&s, "no-validate", ApiClientKind::User, Some("pw"), &["mfa"]).await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
    ];
    let (status, body) = as_client(&s, "/oauth/token", &no_validate, &grant).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    let no_mfa = api_client(
        &s,
        "no-mfa",
        ApiClientKind::User,
        Some("win-logon"),
        &["validate"],
    )
    .await;
    let (status, body) = as_client(&s, "/oauth/token", &no_mfa, &grant).await;
    assert_eq!(status, 200, "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = with_bearer(&s, "/oauth/mfa", &pending, &[("otp", &s.hotp(0))]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    // New clients get what their type needs when no scope is named.
    let user_default = api_client(&s, "portal", ApiClientKind::User, Some("win-logon"), &[]).await;
    let (status, body) = as_client(&s, "/oauth/token", &user_default, &grant).await;
    assert_eq!(status, 200, "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = with_bearer(&s, "/oauth/mfa", &pending, &[("otp", &s.hotp(0))]).await;
    assert_eq!(status, 200, "{body}");

    // An application that takes /validate requests only from API clients.
    let out = common::tessera_ok(
        &s,
        &[
            "app",
            "set",
            "win-logon",
            "--factor",
            "password",
            "--factor",
            "soft_otp",
            "--require-client-token",
            "true",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("an API client's token"),
        "{out:?}"
    );
    s.set(json!({"validate_application": "win-logon"})).await;
    let (status, body) = s
        .post(
            "/validate/check",
            &[("user", "alice"), ("pass", "alice-password")],
        )
        .await;
    assert_eq!(
        (status, body["result"]["error"]["code"].as_u64()),
        (reqwest::StatusCode::UNAUTHORIZED, Some(4033)),
        "{body}"
    );
    // The agent (client credentials; its default scope is validate) calls with its token.
    let agent = api_client(&s, "winlogon", ApiClientKind::Agent, Some("win-logon"), &[]).await;
    let (status, body) = as_client(
        &s,
        "/oauth/token",
        &agent,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = with_bearer(
        &s,
        "/validate/check",
        &token,
        &[("user", "alice"), ("pass", "alice-password")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["authentication"], "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = with_bearer(
        &s,
        "/validate/check",
        &token,
        &[
            ("user", "alice"),
            ("transaction_id", &tx),
            ("pass", &s.hotp(1)),
        ],
    )
    .await;
    assert_eq!(body["result"]["authentication"], "ACCEPT", "{body}");
    let accepted = &s.audit("authenticate").await[0];
    assert_eq!(
        (accepted.actor.as_str(), accepted.application.as_deref()),
        ("api:winlogon", Some("win-logon"))
    );
    // The token's twin signature (r, n - s), which ECDSA also accepts, is no token (attack run,
    // low: a token had two valid forms).
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = data_encoding::BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    assert!(sig.normalize_s().is_none(), "issued with the low s");
    let (r, s_part) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s_part).unwrap();
    let twin = format!(
        "{input}.{}",
        data_encoding::BASE64URL_NOPAD.encode(&twin.to_bytes())
    );
    let (status, _) = with_bearer(
        &s,
        "/validate/check",
        &twin,
        &[("user", "alice"), ("pass", "alice-password")],
    )
    .await;
    assert_eq!(status, 401, "the twin is refused at the validate API");
    let introspector_for_twin = api_client(
        &s,
        "twin-check",
        ApiClientKind::Agent,
        None,
        &["introspect"],
    )
    .await;
    let (_, body) = as_client(
        &s,
        "/oauth/introspect",
        &introspector_for_twin,
        &[("token", &twin)],
    )
    .await;
    assert_eq!(body["active"], false, "{body}");
    let (_, body) = as_client(
        &s,
        "/oauth/introspect",
        &introspector_for_twin,
        &[("token", &token)],
    )
    .await;
    assert_eq!(body["active"], true, "{body}");
    // A token without the scope validate, a pending token, a forged or revoked one: refused.
    let introspector = api_client(&s, "auditor", ApiClientKind::Agent, None, &["introspect"]).await;
    let (_, body) = as_client(
        &s,
        "/oauth/token",
        &introspector,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let no_scope = body["access_token"].as_str().unwrap().to_string();
    let mut forged = token.clone();
    forged.push('x');
    let (_, body) = as_client(&s, "/oauth/token", &no_mfa, &grant).await;
    let mfa_pending = body["access_token"].as_str().unwrap().to_string();
    for bad in [&no_scope, &forged, &mfa_pending] {
        let (status, body) = with_bearer(
            &s,
            "/validate/check",
            bad,
            &[("user", "alice"), ("pass", "alice-password")],
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, _) = as_client(&s, "/oauth/revoke", &agent, &[("token", &token)]).await;
    assert_eq!(status, 200);
    let (status, _) = with_bearer(
        &s,
        "/validate/check",
        &token,
        &[("user", "alice"), ("pass", "alice-password")],
    )
    .await;
    assert_eq!(status, 401, "a revoked token");
    s.stop().await;
}

/// `/validate/check` from local address `from`: (status, Retry-After, body).
async fn post_from(
    s: &TestServer,
    from: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = http
        .post(format!("{}{path}", s.url))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// No throttling of expensive requests (attack run, medium): a client could send the checking
/// doors as many requests as it liked. Each address now has a budget per minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_address_has_a_request_budget_per_minute() {
    let s = password_server(Backend::Sqlite).await;
    s.set(json!({"api_requests_per_minute": 4, "account_locking": false}))
        .await;
    let form = [("user", "alice"), ("pass", "wrong")];
    for _ in 0..4 {
        assert_eq!(
            post_from(&s, "127.0.0.2", "/validate/check", &form).await.0,
            200
        );
    }
    let (status, retry, body) = post_from(&s, "127.0.0.2", "/validate/check", &form).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["result"]["error"]["code"], 429, "{body}");
    let wait: i64 = retry.unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    // /auth and /oauth/token count against the same budget; other addresses have their own.
    assert_eq!(
        post_from(
            &s,
            "127.0.0.2",
            "/auth",
            &[("username", "x"), ("password", "y")]
        )
        .await
        .0,
        429
    );
    assert_eq!(
        post_from(
            &s,
            "127.0.0.2",
            "/oauth/token",
            &[("grant_type", "client_credentials")]
        )
        .await
        .0,
        429
    );
    assert_eq!(
        post_from(&s, "127.0.0.3", "/validate/check", &form).await.0,
        200
    );
    // Not counted: nothing else (the admin API, health).
    let res = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The next minute starts afresh; exempt networks are never counted.
    s.advance(60);
    assert_eq!(
        post_from(&s, "127.0.0.2", "/validate/check", &form).await.0,
        200
    );
    s.set(json!({"rate_limit_exempt": "127.0.0.0/30"})).await;
    for _ in 0..6 {
        assert_eq!(
            post_from(&s, "127.0.0.2", "/validate/check", &form).await.0,
            200
        );
    }
    // A bad network is refused with the setting's name.
    let refused = s
        .admin()
        .update_settings(
            &actor(),
            serde_json::from_value(json!({"rate_limit_exempt": "10.0.0.0/33"})).unwrap(),
        )
        .await;
    assert!(
        format!("{refused:?}").contains("rate_limit_exempt"),
        "{refused:?}"
    );
    s.stop().await;
}

/// Hashing was one queue in arrival order (attack run, medium: 32 connections from one client
/// raised a login from 24 ms to 524 ms). Addresses now take turns, and a full queue sheds
/// requests with 503 and Retry-After instead of growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_shed_and_others_take_their_turn() {
    let s = password_server(Backend::Sqlite).await;
    // Hashes of about 20-40 ms here, so that a queue builds up; no locks, which would spare
    // the flood's hashes.
    s.set(json!({"account_locking": false, "argon2_memory_kib": 32768, "argon2_iterations": 2}))
        .await;
    // alice's password hashed at that cost.
    s.admin()
        .update_user(
            &actor(),
            None,
            "alice",
            Default::default(),
            Some(Some(zeroize::Zeroizing::new("alice-password-2".into()))),
        )
        .await
        .unwrap();
    let mut flood = Vec::new();
    for i in 0..120 {
        let (http, url) = (
            reqwest::Client::builder()
                .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
            format!("{}/validate/check", s.url),
        );
        flood.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let res = http
                .post(url)
                .form(&[
                    ("user", "nobody"),
                    ("pass", format!("wrong-password-{i}").as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, started.elapsed())
        }));
    }
    // Once the flood is queued, a login from another address.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = post_from(
        &s,
        "127.0.0.1",
        "/validate/check",
        &[("user", "alice"), ("pass", "alice-password-2")],
    )
    .await;
    let legit = started.elapsed();
    assert_eq!(
        (status, body["result"]["authentication"].as_str()),
        (200, Some("ACCEPT")),
        "{body}"
    );
    let mut shed = 0;
    let mut slowest = std::time::Duration::ZERO;
    for t in flood {
        let (status, retry, took) = t.await.unwrap();
        match status {
            200 => slowest = slowest.max(took),
            503 => {
                assert_eq!(retry.as_deref(), Some("1"));
                shed += 1;
            }
            other => panic!("flood answered {other}"),
        }
    }
    assert!(shed > 0, "the queue did not shed anything");
    // With one queue in arrival order the login would have waited for the flood's backlog.
    assert!(
        legit * 3 < slowest,
        "the login took {legit:?}, the slowest answered flood request {slowest:?}"
    );
    let shed_records = s
        .running
        .as_ref()
        .unwrap()
        .app
        .store
        .query_audit(&tessera_core::model::AuditQuery {
            action: Some("authenticate".into()),
            result: Some("error".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        shed_records
            .iter()
            .all(|r| r.reason.contains("too many passwords to check")),
        "{shed_records:?}"
    );
    let shed_records = shed_records.len();
    assert_eq!(
        shed_records, shed,
        "each shed request is audited as an error"
    );
    s.stop().await;
}

/// A half-sent request header was held open 45 s (attack run, medium); a slow body likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_configured(Backend::Sqlite, None, |c| {
        c.http_limits.read_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let addr = s.running.as_ref().unwrap().http_addr;
    // Headers that never end: the connection is closed after the read deadline.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /validate/check HTTP/1.1\r\nHost: x\r\nContent-")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(8),
        half.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "still open after 8 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // A body that never arrives in full: 408, in privacyIDEA's format at the validate API.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /validate/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=alice",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(8),
        slow.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":905"), "{answer}");
    s.stop().await;
}

/// One address could open any number of connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_per_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_configured(Backend::Sqlite, None, |c| {
        c.http_limits.max_per_address = 3;
        c.http_limits.read_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    let addr = s.running.as_ref().unwrap().http_addr;
    let mut answer = vec![0u8; 64];
    // Three connections per address, held open (kept alive): a fourth is closed at once,
    // another address is served.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = c.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), fourth.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the fourth connection was served");
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = other.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // A closed connection gives its place back.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut answer))
            .await
            .unwrap()
            .unwrap_or(0);
        if n > 0 {
            again = Some(String::from_utf8_lossy(&answer[..n]).into_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    drop(held);
    s.stop().await;
}

/// The token fail counter was read before the check and counted after it (attack run, high):
/// with account locking off, sixty OTPs sent at once were all compared against a fail limit of
/// ten. Now each comparison first takes an attempt from the token.
async fn a_burst_of_otps_gets_no_more_checks_than_the_token_allows(b: Backend) {
    let s = password_server(b).await;
    s.set(json!({"account_locking": false})).await;
    s.use_app("pin-otp", &[&[Method::SoftOtp]]).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTPBURST",
        Some("1234"),
    )
    .await;
    let valid: Vec<String> = (-2..=2).map(|o| s.totp(o)).collect();
    let wrong: Vec<String> = (0..2000u32)
        .map(|i| format!("{:06}", i * 7919 % 1_000_000))
        .filter(|c| !valid.contains(c))
        .take(WRONG)
        .collect();
    let mut forms: Vec<Vec<(String, String)>> = wrong
        .iter()
        .map(|c| {
            vec![
                ("user".into(), "alice".into()),
                ("pass".into(), format!("1234{c}")),
            ]
        })
        .collect();
    forms.push(vec![
        ("user".into(), "alice".into()),
        ("pass".into(), format!("1234{}", s.totp(0))),
    ]);
    let answers = burst(&s, "/validate/check", forms).await;
    let passed = answers[WRONG].1["result"]["authentication"] == "ACCEPT";
    let records = records_of(&s, "authenticate", "alice").await;
    let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
    let compared = reasons
        .iter()
        .filter(|r| r.starts_with("wrong OTP value"))
        .count();
    let refused = reasons
        .iter()
        .filter(|r| r.starts_with("token fail counter exceeded"))
        .count();
    assert_eq!(
        compared + refused + usize::from(passed),
        WRONG + 1,
        "{reasons:?}"
    );
    // max_fail is 10 (default_max_fail); a right OTP that took one of the attempts clears the
    // count, and the wrong ones after it may take ten more.
    match passed {
        true => assert!(compared <= 19, "{compared} compared: {reasons:?}"),
        false => assert_eq!(compared, 10, "{reasons:?}"),
    }
    // The token is locked now (or soon): an administrator resets its fail counter through the
    // admin API, and the next code passes.
    if !passed {
        assert_eq!(
            s.check(&[("user", "alice"), ("pass", &format!("1234{}", s.totp(1)))])
                .await
                .0,
            "REJECT"
        );
        let api = common::Api {
            s: &s,
            token: s.admin_token("ada", AdminRole::Admin).await,
        };
        let (status, body) = api
            .post("/tokens/TOTPBURST/reset-failcount", json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fail_count"], 0, "{body}");
        assert_eq!(
            s.check(&[("user", "alice"), ("pass", &format!("1234{}", s.totp(1)))])
                .await
                .0,
            "ACCEPT"
        );
    }
    s.stop().await;
}
