//! OAuth2 for API clients: tokens fetched by authlib and verified by PyJWT against the JWKS
//! (real client libraries, not ours), introspection, revocation, RFC 6749 errors, the rate
//! limit and the IP allow-list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor};
use serde_json::{Value, json};
use tessera_core::admin::NewApiClient;
use tessera_core::model::{ApiClientKind, Method, Net};

/// A server whose OAuth issuer is its own address.
async fn oauth_server(b: Backend) -> TestServer {
    let s = TestServer::start(b, None).await;
    s.set(json!({"public_url": s.url})).await;
    s
}

async fn client(
    s: &TestServer,
    name: &str,
    scopes: &[&str],
    ips: &[&str],
    rate: u32,
) -> (String, String) {
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: name.into(),
                kind: ApiClientKind::Agent,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                allowed_ips: ips.iter().map(|i| i.parse::<Net>().unwrap()).collect(),
                rate_limit_per_minute: rate,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (
        created.client.client_id,
        created.client_secret.as_deref().unwrap().to_string(),
    )
}

async fn post(
    s: &TestServer,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = s.http.post(format!("{}{path}", s.url)).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

both_backends!(
    tokens_for_agents_verified_by_independent_libraries,
    encrypted_payloads_fresh_once_and_untampered,
);

async fn tokens_for_agents_verified_by_independent_libraries(b: Backend) {
    let s = oauth_server(b).await;
    let (id, secret) = client(&s, "pam", &["validate", "introspect"], &[], 0).await;
    let seen = common::python_peer(
        "oauth",
        "oauth_peer.py",
        &[s.url.clone(), id.clone(), secret.clone()],
        &json!({"scope": "validate"}),
    );
    assert_eq!(seen[0]["metadata"]["issuer"], s.url.as_str());
    for step in &seen[1..] {
        assert_eq!(step["token"]["token_type"], "Bearer", "{step}");
        assert_eq!(step["claims"]["client_id"], id.as_str());
        assert_eq!(step["claims"]["scope"], "validate");
        assert_eq!(step["claims"]["role"], "AGENT");
        assert_eq!(step["header"]["alg"], "ES256");
        assert_eq!(step["header"]["typ"], "at+jwt");
    }
    let token = seen[1]["token"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Introspection (RFC 7662), then revocation (RFC 7009).
    let (status, body) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "validate");
    let (status, _) = post(
        &s,
        "/oauth/revoke",
        Some((&id, &secret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(body, json!({"active": false}), "revoked");
    // A tampered token is not active.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (_, body) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", &forged)],
    )
    .await;
    assert_eq!(body["active"], false);
    // The key is the same after a restart of the engine's view (one key for all nodes).
    let (_, jwks) = {
        let r = s
            .http
            .get(format!("{}/oauth/jwks", s.url))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(jwks["keys"][0]["kid"], seen[1]["header"]["kid"]);
    // A deleted client's tokens end with it.
    let other = seen[2]["token"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", &other)],
    )
    .await;
    assert_eq!(body["active"], true);
    let (inspector, inspector_secret) = client(&s, "inspector", &["introspect"], &[], 0).await;
    s.admin()
        .delete::<tessera_core::model::ApiClient>(&actor(), "pam")
        .await
        .unwrap();
    let (_, body) = post(
        &s,
        "/oauth/introspect",
        Some((&inspector, &inspector_secret)),
        &[("token", &other)],
    )
    .await;
    assert_eq!(body["active"], false, "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_6749_errors_rate_limit_and_allow_list() {
    let s = oauth_server(Backend::Sqlite).await;
    let (id, secret) = client(&s, "agent", &["validate"], &[], 3).await;
    let cc = [("grant_type", "client_credentials")];
    // Wrong secret, unknown client, no authentication: invalid_client with 401 (and the Basic
    // challenge).
    let (status, body) = post(&s, "/oauth/token", Some((&id, "wrong")), &cc).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, _) = post(&s, "/oauth/token", Some(("tc-nobody000", &secret)), &cc).await;
    assert_eq!(status, 401);
    let r = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .form(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"tessera\"");
    // Client authentication in the body works too (client_secret_post), but not both ways.
    let (status, body) = post(
        &s,
        "/oauth/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &s,
        "/oauth/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Grant and scope errors.
    let (_, body) = post(
        &s,
        "/oauth/token",
        Some((&id, &secret)),
        &[("grant_type", "implicit")],
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type");
    let (_, body) = post(
        &s,
        "/oauth/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "introspect"),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
    // Introspection needs the introspect scope.
    let (status, _) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", "x")],
    )
    .await;
    assert_eq!(status, 403);
    // Three requests a minute: the ones above that authenticated count (the body one and the
    // two grant/scope errors), so the next is refused.
    let (status, body) = post(&s, "/oauth/token", Some((&id, &secret)), &cc).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("temporarily_unavailable")),
        "{body}"
    );

    // Without public_url the issuer would come from the request: refused.
    s.set(json!({"public_url": ""})).await;
    let (fresh, fresh_secret) = client(&s, "fresh", &["validate"], &[], 0).await;
    let (status, body) = post(&s, "/oauth/token", Some((&fresh, &fresh_secret)), &cc).await;
    assert_eq!(status, 503, "{body}");
    let r = s
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    s.set(json!({"public_url": s.url})).await;

    // An allow-list that does not hold 127.0.0.1.
    let (id2, secret2) = client(&s, "remote", &["validate"], &["10.0.0.0/8"], 0).await;
    let (status, body) = post(&s, "/oauth/token", Some((&id2, &secret2)), &cc).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // The same answer as a wrong secret: the secret is not confirmed from outside.
    let (_, wrong) = post(&s, "/oauth/token", Some((&id2, "wrong")), &cc).await;
    assert_eq!(body, wrong);
    // Behind a trusted proxy, junk a client writes in front of X-Forwarded-For does not hide
    // the address the proxy appended.
    s.set(json!({"override_client": "127.0.0.1"})).await;
    let (local, local_secret) = client(&s, "local-only", &["validate"], &["127.0.0.0/8"], 0).await;
    let via_proxy = |xff: &'static str| {
        let (s, local, local_secret) = (&s, local.clone(), local_secret.clone());
        async move {
            s.http
                .post(format!("{}/oauth/token", s.url))
                .basic_auth(local, Some(local_secret))
                .header("X-Forwarded-For", xff)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(via_proxy("127.0.0.9").await, 200);
    assert_eq!(via_proxy("junk, 192.0.2.7").await, 401);
    let refused = s.audit("oauth_client_auth").await;
    for why in [
        "address not in the client's allow-list",
        "wrong client secret",
        "unknown client_id",
    ] {
        assert!(
            refused.iter().any(|r| r.reason == why),
            "{why}: {refused:?}"
        );
    }
    s.stop().await;
}

#[test]
fn the_cli_creates_api_clients_and_export_leaves_the_secret_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "client",
        "add",
        "api",
        "pam",
        "--scope",
        "validate",
        "--allow-ip",
        "10.0.0.0/8",
        "--json",
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    assert!(created["client_id"].as_str().unwrap().starts_with("tc-"));
    let (ok, _, err) = run(&["client", "add", "api", "pam"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["client", "add", "api", "bad", "--scope", "everything"]);
    assert!(!ok && err.contains("'everything' is not one of"), "{err}");
    let (ok, out, _) = run(&["export"]);
    assert!(ok);
    assert!(
        out.contains("[[api_client]]") && out.contains("10.0.0.0/8"),
        "{out}"
    );
    assert!(
        !out.contains("secret_hash") && !out.contains(secret),
        "{out}"
    );
}

/// The claims of a JWT (its signature is checked by PyJWT in the test above).
/// A user client (password grant) of `app` with the scopes `validate` and `mfa`.
async fn user_client(s: &TestServer, name: &str, app: &str) -> (String, String) {
    let c = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: name.into(),
                kind: ApiClientKind::User,
                application: Some(app.into()),
                scopes: vec!["validate".into(), "mfa".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (
        c.client.client_id,
        c.client_secret.as_deref().unwrap().to_string(),
    )
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(part.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_then_the_mfa_step_with_an_sms_code() {
    let gw = common::Provider::start().await;
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    let decl: tessera_core::admin::Declaration = serde_json::from_value(json!({
        "delivery_profile": [{"name": "gw", "type": "http",
            "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"}],
        "settings": {"sms_delivery": "gw"},
        "application": [
            {"name": "portal", "factors": [{"methods": ["password"]}, {"methods": ["sms_otp"]}]},
            {"name": "simple", "factors": [{"methods": ["password"]}]}
        ]
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
    let (id, secret) = user_client(&s, "portal-app", "portal").await;
    let grant = |user: &'static str, pass: &'static str| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            post(
                s,
                "/oauth/token",
                Some((&id, &secret)),
                &[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", pass),
                ],
            )
            .await
        }
    };
    let (status, body) = grant("alice", "wrong").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = grant("nobody", "x").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "same answer"
    );

    // The password is right, an SMS code follows: an MFA_PENDING token.
    let (status, body) = grant("alice", "alice-password").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "MFA_PENDING");
    assert_eq!(body["mfa_required"], true);
    assert_eq!(body["mfa"][0]["type"], "sms");
    let pending = body["access_token"].as_str().unwrap().to_string();
    // Not an access token: another audience, and inactive to introspection.
    let (inspector, inspector_secret) = client(&s, "inspector", &["introspect"], &[], 0).await;
    let (_, intro) = post(
        &s,
        "/oauth/introspect",
        Some((&inspector, &inspector_secret)),
        &[("token", &pending)],
    )
    .await;
    assert_eq!(intro["active"], false, "{intro}");
    assert_eq!(claims_of(&pending)["aud"], "tessera-mfa");
    let c = claims_of(&pending);
    assert_eq!(
        (c["role"].as_str(), c["sub"].as_str(), c["scope"].as_str()),
        (Some("MFA_PENDING"), Some("alice"), Some("mfa"))
    );
    assert!(body["expires_in"].as_i64().unwrap() <= 900);
    let sms = gw.wait_for("/sms", 1).await;
    let text: String = form_urlencoded::parse(sms[0].body.as_bytes())
        .find(|(k, _)| k == "text")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();

    let step = |otp: String, bearer: String| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/oauth/mfa", s.url))
                .bearer_auth(bearer)
                .form(&[("otp", otp.as_str())])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = step(wrong.into(), pending.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = step(code.clone(), pending.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "USER");
    let user_token = body["access_token"].as_str().unwrap().to_string();
    let c = claims_of(&user_token);
    assert_eq!(
        (c["role"].as_str(), c["sub"].as_str(), c["scope"].as_str()),
        (Some("USER"), Some("alice"), Some("validate mfa"))
    );
    // The MFA_PENDING token is spent; a USER token is no MFA_PENDING token.
    let (status, body) = step(code.clone(), pending).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let (status, body) = step(code, user_token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_description"], "not an MFA_PENDING token");

    // One factor only: a USER token at once. An agent client may not use the password grant.
    let (id2, secret2) = user_client(&s, "simple-app", "simple").await;
    let (status, body) = post(
        &s,
        "/oauth/token",
        Some((&id2, &secret2)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    let (agent, agent_secret) = client(&s, "agent", &["validate"], &[], 0).await;
    let (_, body) = post(
        &s,
        "/oauth/token",
        Some((&agent, &agent_secret)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await;
    assert_eq!(body["error"], "unauthorized_client");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_signs_a_user_in_and_refreshes_the_token() {
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("simple", &[&[tessera_core::model::Method::Password]])
        .await;
    let created = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "portal".into(),
                kind: ApiClientKind::User,
                application: Some("simple".into()),
                scopes: vec!["validate".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seen = common::python_peer(
        "oauth",
        "oauth_peer.py",
        &[
            s.url.clone(),
            created.client.client_id.clone(),
            created.client_secret.as_deref().unwrap().to_string(),
        ],
        &json!({"username": "alice", "password": "alice-password"}),
    );
    let r = &seen[1];
    for claims in [&r["first"], &r["second"]] {
        assert_eq!(claims["sub"], "alice", "{r}");
        assert_eq!(claims["role"], "USER");
    }
    assert_ne!(r["first"]["jti"], r["second"]["jti"]);
    assert_eq!(
        r["renewed_refresh"], true,
        "a new refresh token with each refresh"
    );
    assert_eq!(r["reuse_status"], 400, "{r}");
    assert_eq!(r["reuse"]["error"], "invalid_grant");

    // A disabled user's refresh token renews nothing.
    let (status, body) = post(
        &s,
        "/oauth/token",
        Some((
            &created.client.client_id,
            created.client_secret.as_deref().unwrap().as_str(),
        )),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    s.admin()
        .update_user(
            &actor(),
            None,
            "alice",
            serde_json::from_value(json!({"enabled": false})).unwrap(),
            None,
        )
        .await
        .unwrap();
    let (status, body) = post(
        &s,
        "/oauth/token",
        Some((
            &created.client.client_id,
            created.client_secret.as_deref().unwrap().as_str(),
        )),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    s.stop().await;
}

/// On both backends: the replay record is a claim in the store.
async fn encrypted_payloads_fresh_once_and_untampered(b: Backend) {
    let s = oauth_server(b).await;
    let (id, secret) = client(&s, "agent", &["validate"], &[], 0).await;
    s.set(json!({"encryption_enabled": true, "encryption_endpoints": "/oauth/token"}))
        .await;
    let key = tessera_http::payload::public_key(s.admin().engine().keys())
        .await
        .unwrap();
    // The CLI helper knows the same key and seals what the endpoint takes.
    let cli = |args: &[&str]| {
        let out = common::tessera_ok(&s, args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["encryption", "key"]), key);
    let send = |body: String| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            let r = s
                .http
                .post(format!("{}/oauth/token", s.url))
                .basic_auth(id, Some(secret))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let plain = "grant_type=client_credentials";
    // Unencrypted: refused.
    let (status, body) = send(plain.into()).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("only encrypted"),
        "{body}"
    );
    // Sealed by the CLI: accepted, once.
    let sealed = cli(&["encryption", "seal", plain]);
    let (status, body) = send(sealed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    let (status, body) = send(sealed.clone()).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("used already"),
        "{body}"
    );
    // The same sealed payload sent twenty times at once: one passes (the replay record is one
    // claiming write; a check-then-insert let two pass).
    let sealed = cli(&["encryption", "seal", plain]);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url, id, secret, body) = (
            s.http.clone(),
            format!("{}/oauth/token", s.url),
            id.clone(),
            secret.clone(),
            sealed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut passed = 0;
    for t in tasks {
        passed += usize::from(t.await.unwrap() == 200);
    }
    assert_eq!(passed, 1);
    // Sealed by an HPKE implementation that is not ours (pyhpke): accepted too.
    let seen = common::python_peer(
        "oauth",
        "oauth_peer.py",
        &[s.url.clone(), id.clone(), secret.clone()],
        &json!({"seal": plain, "public_key": key}),
    );
    assert_eq!(seen[1]["status"], 200, "{}", seen[1]);
    assert!(seen[1]["answer"]["access_token"].is_string());
    // Outside the window (120 s by default).
    let now = s.now();
    let stale = tessera_http::payload::seal(&key, plain, now - 600, "stale-nonce-000001").unwrap();
    let (status, body) = send(stale).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("validity window"),
        "{body}"
    );
    // Changed on the way.
    let fresh = tessera_http::payload::seal(&key, plain, now, "fresh-nonce-000002").unwrap();
    let mut env: Value = serde_json::from_str(&fresh).unwrap();
    let mut ct = data_encoding::BASE64
        .decode(env["ct"].as_str().unwrap().as_bytes())
        .unwrap();
    ct[0] ^= 1;
    env["ct"] = Value::String(data_encoding::BASE64.encode(&ct));
    let (status, body) = send(env.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("cannot be decrypted"),
        "{body}"
    );
    // Endpoints not listed are untouched.
    let (status, _) = post(
        &s,
        "/oauth/introspect",
        Some((&id, &secret)),
        &[("token", "x")],
    )
    .await;
    assert_eq!(
        status, 403,
        "plain form as before (this client has no introspect scope)"
    );

    // The organisation's own key pair (seed 003's CONF_ENCRYPTION_PRIVATE_KEY), made by OpenSSL.
    let pem = s.dir.path().join("org-x25519.pem");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "X25519",
        "-out",
        pem.to_str().unwrap(),
    ]);
    let der = openssl(&[
        "pkey",
        "-in",
        pem.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let org_public = data_encoding::BASE64.encode(&der[der.len() - 32..]);
    // A public key that is not the private key's: refused, the old key stays.
    let refused = common::tessera(
        &s,
        &[
            "encryption",
            "import-key",
            pem.to_str().unwrap(),
            "--public-key",
            &key,
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing was changed"));
    assert_eq!(cli(&["encryption", "key"]), key);
    let out = common::tessera_ok(
        &s,
        &[
            "encryption",
            "import-key",
            pem.to_str().unwrap(),
            "--public-key",
            &org_public,
            "--json",
        ],
    );
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["public_key"], org_public.as_str());
    assert_eq!(cli(&["encryption", "key"]), org_public);
    // Sealed to the old key: refused; sealed to the organisation's by pyhpke: accepted.
    let old = tessera_http::payload::seal(&key, plain, s.now(), "old-key-nonce-0003").unwrap();
    let (status, body) = send(old).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("cannot be decrypted"),
        "{body}"
    );
    let seen = common::python_peer(
        "oauth",
        "oauth_peer.py",
        &[s.url.clone(), id.clone(), secret.clone()],
        &json!({"seal": plain, "public_key": org_public}),
    );
    assert_eq!(seen[1]["status"], 200, "{}", seen[1]);
    // The private key as base64 of its 32 bytes (the seed's form) is taken too.
    let raw = openssl(&["pkey", "-in", pem.to_str().unwrap(), "-outform", "DER"]);
    let b64 = s.dir.path().join("org-x25519.b64");
    std::fs::write(&b64, data_encoding::BASE64.encode(&raw[raw.len() - 32..])).unwrap();
    common::tessera_ok(&s, &["encryption", "import-key", b64.to_str().unwrap()]);
    assert_eq!(cli(&["encryption", "key"]), org_public);
    s.stop().await;
}

/// A server with an SMS gateway (and WhatsApp through the same stand-in), the applications
/// `portal` (password, then an SMS code) and `otp-login` (an SMS code, then another), and a
/// user client for each. Returns the server, the gateway and the clients' credentials.
async fn seed_003_server(
    settings: Value,
) -> (
    TestServer,
    common::Provider,
    (String, String),
    (String, String),
) {
    let gw = common::Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    let mut all =
        json!({"sms_delivery": "gw", "whatsapp_delivery": "wa", "fallback_channels": "whatsapp"});
    for (k, v) in settings.as_object().unwrap() {
        all[k] = v.clone();
    }
    let decl: tessera_core::admin::Declaration = serde_json::from_value(json!({
        "delivery_profile": [
            {"name": "gw", "type": "http", "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"},
            {"name": "wa", "type": "http", "url": format!("{}/wa", gw.url), "body": "to={phone}&text={message}"}
        ],
        "settings": all,
        "application": [
            {"name": "portal", "factors": [{"methods": ["password"]}, {"methods": ["sms_otp"]}]},
            {"name": "otp-login", "factors": [{"methods": ["sms_otp"]}, {"methods": ["sms_otp"]}]},
            {"name": "vault", "factors": [{"methods": ["password"]}, {"methods": ["mfa_password"], "if_enrolled": true}]}
        ]
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
    let portal = user_client(&s, "portal-app", "portal").await;
    let otp = user_client(&s, "otp-app", "otp-login").await;
    (s, gw, portal, otp)
}

/// The code in the `n`th message (1-based) the gateway got on `path`.
async fn code_of(gw: &common::Provider, path: &str, n: usize) -> String {
    let got = gw.wait_for(path, n).await;
    let text: String = form_urlencoded::parse(got[n - 1].body.as_bytes())
        .find(|(k, _)| k == "text")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    text.chars().filter(char::is_ascii_digit).take(6).collect()
}

fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

async fn bearer_post(
    s: &TestServer,
    path: &str,
    bearer: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = s
        .http
        .post(format!("{}{path}", s.url))
        .bearer_auth(bearer)
        .form(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json::<Value>().await.unwrap())
}

/// Signs alice in to `portal` with her password: the MFA_PENDING token, and the number of
/// SMS sent so far.
async fn portal_login(s: &TestServer, (id, secret): &(String, String)) -> (u16, Value) {
    post(
        s,
        "/oauth/token",
        Some((id, secret)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await
}

/// Seed 003's two MFA lengths: a code of the MFA step lives `mfa_token_session_minutes` from when
/// it was sent; the MFA step itself `mfa_session_minutes` from the first factor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mfa_code_lives_its_token_session_within_the_mfa_session() {
    let (s, gw, portal, _) = seed_003_server(json!({
        "mfa_token_session_minutes": 2,
        "mfa_session_minutes": 10,
        "mfa_token_minutes": 10,
        "mfa_auto_fill_identifier": true,
    }))
    .await;
    let (status, body) = portal_login(&s, &portal).await;
    assert_eq!(status, 200, "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let first = code_of(&gw, "/sms", 1).await;
    // Three minutes on, the first code is over; the MFA step is not.
    s.advance(180);
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &first)], &[]).await;
    assert_ne!(status, 200, "{body}");
    let (status, body) = bearer_post(&s, "/oauth/mfa/otp/generate", &pending, &[], &[]).await;
    assert_eq!(status, 200, "{body}");
    let second = code_of(&gw, "/sms", 2).await;
    s.advance(60);
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &second)], &[]).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );

    // A code sent late in the MFA step ends with the step, not two minutes after.
    let (status, body) = portal_login(&s, &portal).await;
    assert_eq!(status, 200, "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    s.advance(9 * 60);
    let (status, body) = bearer_post(&s, "/oauth/mfa/otp/generate", &pending, &[], &[]).await;
    assert_eq!(status, 200, "{body}");
    let late = code_of(&gw, "/sms", 4).await;
    s.advance(90);
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &late)], &[]).await;
    assert_ne!(status, 200, "the MFA step ended: {body}");
    let refused = s
        .admin()
        .update_settings(
            &actor(),
            serde_json::from_value(json!({"mfa_token_session_minutes": 0})).unwrap(),
        )
        .await;
    assert!(refused.is_err());
    s.stop().await;
}

/// One login to `portal` answered with the right or a wrong code (the `n`th SMS).
async fn attempt(
    s: &TestServer,
    gw: &common::Provider,
    portal: &(String, String),
    n: usize,
    right: bool,
) -> (u16, Value) {
    let (status, body) = portal_login(s, portal).await;
    if status != 200 {
        return (status, body);
    }
    let pending = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(gw, "/sms", n).await;
    let otp = if right {
        code.clone()
    } else {
        wrong_code(&code).to_string()
    };
    bearer_post(s, "/oauth/mfa", &pending, &[("otp", &otp)], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_retries_per_session_and_mfa_locking_as_in_seed_003() {
    // Per session: two wrong MFA codes end the session, even for the right code after them.
    // The account lock (max_otp_attempts 10) is far away.
    let (s, gw, portal, _) = seed_003_server(json!({
        "mfa_max_otp_attempts": 2, "max_otp_attempts": 10,
    }))
    .await;
    let (status, body) = portal_login(&s, &portal).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("MFA_PENDING")),
        "{body}"
    );
    assert_eq!(body["expires_in"], 900, "mfa_token_minutes");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(&gw, "/sms", 1).await;
    for _ in 0..2 {
        let (status, body) = bearer_post(
            &s,
            "/oauth/mfa",
            &pending,
            &[("otp", wrong_code(&code))],
            &[],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &code)], &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "too many wrong answers in this session"
    );
    // A new session starts afresh (the seed: lock the account to stop that).
    let (_, body) = portal_login(&s, &portal).await;
    let pending = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(&gw, "/sms", 2).await;
    let (status, body) = bearer_post(
        &s,
        "/oauth/mfa/otp/validate",
        &pending,
        &[("otp", &code)],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    s.stop().await;

    // MFA locking: 3 wrong MFA codes within the 5-minute interval lock the MFA step for 10
    // minutes. Each wrong code in a session of its own: the account counts them.
    let (s, gw, portal, _) = seed_003_server(json!({
        "mfa_account_locking": true, "mfa_max_otp_attempts": 3, "mfa_lock_period_minutes": 10,
        "incorrect_attempt_interval_minutes": 5, "max_otp_attempts": 100,
    }))
    .await;
    // The seed's example: a wrong code, another within 5 minutes (counted together), one
    // after the 5 minutes (the first again) and one more: 2, not 4 — no lock.
    assert_eq!(attempt(&s, &gw, &portal, 1, false).await.0, 400);
    s.advance(4 * 60);
    assert_eq!(attempt(&s, &gw, &portal, 2, false).await.0, 400);
    s.advance(6 * 60);
    assert_eq!(attempt(&s, &gw, &portal, 3, false).await.0, 400);
    s.advance(60);
    assert_eq!(attempt(&s, &gw, &portal, 4, false).await.0, 400);
    let (status, body) = attempt(&s, &gw, &portal, 5, true).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    // Success cleared the count; now three within the interval lock the MFA step.
    for n in 6..9 {
        assert_eq!(attempt(&s, &gw, &portal, n, false).await.0, 400);
    }
    // Locked: the password still passes, but no code is sent and the login is refused.
    let (status, body) = portal_login(&s, &portal).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        s.audit("authenticate").await[0].reason,
        "account locked after too many failed attempts"
    );
    assert_eq!(
        gw.requests("/sms").len(),
        8,
        "no code sent to a locked account"
    );
    // After the lock period the right code passes again.
    s.advance(10 * 60 + 1);
    let (status, body) = attempt(&s, &gw, &portal, 9, true).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_otp_then_mfa_otp_with_fallback_header_check_and_key_expiry() {
    let (s, gw, _, (id, secret)) = seed_003_server(json!({
        "otp_required_header": "X-Edge-Auth: cdn-secret",
        "api_session_minutes": 10, "mfa_key_expiry_minutes": 30,
    }))
    .await;
    let edge = [("X-Edge-Auth", "cdn-secret")];
    let generate = |user: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            let mut req = s
                .http
                .post(format!("{}/oauth/otp/generate", s.url))
                .basic_auth(&id, Some(&secret))
                .form(&[("username", user)]);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // Without the front end's header: refused, nothing sent.
    let (status, body) = generate("alice", &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied")),
        "{body}"
    );
    let (status, _) = generate("alice", &[("X-Edge-Auth", "guess")]).await;
    assert_eq!(status, 403);
    assert!(gw.requests("/sms").is_empty());

    // An unknown user gets the same answer, and no code.
    let (status, ghost) = generate("nobody", &[("X-Edge-Auth", "cdn-secret")]).await;
    assert_eq!(
        (status, ghost["role"].as_str()),
        (200, Some("OTP_PENDING")),
        "{ghost}"
    );
    let (status, body) = generate("alice", &[("X-Edge-Auth", "cdn-secret")]).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("OTP_PENDING")),
        "{body}"
    );
    assert_eq!(body["expires_in"], 600, "api_session_minutes");
    assert_eq!(body["mfa"][0]["type"], ghost["mfa"][0]["type"]);
    let session = body["access_token"].as_str().unwrap().to_string();
    let ghost = ghost["access_token"].as_str().unwrap().to_string();
    // Both name the user as typed; nothing else tells them apart.
    let (real_claims, ghost_claims) = (claims_of(&session), claims_of(&ghost));
    assert_eq!(real_claims["sub"], "alice");
    assert_eq!(ghost_claims["sub"], "nobody");
    for claim in ["role", "realm", "aud", "scope"] {
        assert_eq!(real_claims[claim], ghost_claims[claim], "{claim}");
    }
    // A fallback channel that is not set up is a configuration error, for anyone.
    let with_edge = |path: &'static str, form: &'static [(&'static str, &'static str)]| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            let r = s
                .http
                .post(format!("{}{path}", s.url))
                .basic_auth(&id, Some(&secret))
                .header("X-Edge-Auth", "cdn-secret")
                .form(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = with_edge(
        "/oauth/otp/generate",
        &[("username", "nobody"), ("fallbackChannel", "zalo")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("(1603)")
    );
    // The password grant does not start a code-first application.
    let (status, body) = with_edge(
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "x"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let code = code_of(&gw, "/sms", 1).await;
    assert_eq!(gw.requests("/sms").len(), 1);
    let (status, body) =
        bearer_post(&s, "/oauth/otp/validate", &ghost, &[("otp", &code)], &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // An OTP_PENDING token is not an MFA_PENDING token.
    let (status, _) = bearer_post(&s, "/oauth/mfa", &session, &[("otp", &code)], &[]).await;
    assert_eq!(status, 401);
    let (status, body) = bearer_post(
        &s,
        "/oauth/otp/validate",
        &session,
        &[("otp", wrong_code(&code))],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) =
        bearer_post(&s, "/oauth/otp/validate", &session, &[("otp", &code)], &[]).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("MFA_PENDING")),
        "{body}"
    );
    let pending = body["access_token"].as_str().unwrap().to_string();
    let sms_code = code_of(&gw, "/sms", 2).await;

    // MFA OTP generate: the identifier is required (no auto-fill), must be alice's, and the
    // fallback channel must be configured.
    let resend = |form: &'static [(&'static str, &'static str)],
                  headers: &'static [(&'static str, &'static str)]| {
        let (s, pending) = (&s, pending.clone());
        async move { bearer_post(s, "/oauth/mfa/otp/generate", &pending, form, headers).await }
    };
    let (status, body) = resend(
        &[("fallbackChannel", "whatsapp")],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // Seed 003's 1601/1602: a fallback channel needs its identifier, in the body.
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Fallback Channel needs identifier mobile (1601)"),
        "{body}"
    );
    let (status, body) = resend(
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+4930 1234567"),
            ("fallbackChannel", "mail"),
        ],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Fallback Channel needs identifier email (1602)"),
        "{body}"
    );
    let (status, body) = bearer_post(
        &s,
        "/oauth/mfa/otp/generate?identifierType=mobile&identifierValue=%2B4930%201234567",
        &pending,
        &[("fallbackChannel", "whatsapp")],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("(1601): pass identifierType=mobile and identifierValue in the body, not in the query string"),
        "{body}"
    );
    let (status, _) = resend(
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+4930 1234567"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, 403, "the header check applies");
    let (status, body) = resend(
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+49 30 7654321"),
        ],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = resend(
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+4930 1234567"),
            ("fallbackChannel", "zalo"),
        ],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("(1603)"),
        "{body}"
    );
    let (status, body) = resend(
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+4930 1234567"),
            ("fallbackChannel", "whatsapp"),
        ],
        &[("X-Edge-Auth", "cdn-secret")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["mfa"][0]["message"],
        "Please enter the code sent to you by WhatsApp"
    );
    let wa_code = code_of(&gw, "/wa", 1).await;
    // The new code replaced the SMS one.
    if sms_code != wa_code {
        let (status, _) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &sms_code)], &[]).await;
        assert_eq!(status, 400);
    }
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &wa_code)], &[]).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    let mut refresh = body["refresh_token"].as_str().unwrap().to_string();

    // The refresh token ends 30 minutes after the login (mfa_key_expiry_minutes), however
    // often it is used.
    let refresh_once = |token: String| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            post(
                s,
                "/oauth/token",
                Some((&id, &secret)),
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    s.advance(20 * 60);
    let (status, body) = refresh_once(refresh.clone()).await;
    assert_eq!(status, 200, "{body}");
    refresh = body["refresh_token"].as_str().unwrap().to_string();
    s.advance(11 * 60);
    let (status, body) = refresh_once(refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // An OTP_PENDING session ends with api_session_minutes.
    let (_, body) = generate("alice", edge_static()).await;
    let session = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(&gw, "/sms", 3).await;
    s.advance(11 * 60);
    let (status, _) =
        bearer_post(&s, "/oauth/otp/validate", &session, &[("otp", &code)], &[]).await;
    assert_eq!(status, 401);

    // No refresh tokens when regenerate keys are off.
    s.set(json!({"regenerate_token": false, "regenerate_mfa_token": false}))
        .await;
    let (_, body) = generate("alice", edge_static()).await;
    let session = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(&gw, "/sms", 4).await;
    let (_, body) = bearer_post(
        &s,
        "/oauth/otp/validate",
        &session,
        &[("otp", &code)],
        &edge,
    )
    .await;
    let pending = body["access_token"].as_str().unwrap().to_string();
    let code = code_of(&gw, "/sms", 5).await;
    let (status, body) = bearer_post(&s, "/oauth/mfa", &pending, &[("otp", &code)], &[]).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    assert!(body.get("refresh_token").is_none(), "{body}");
    s.stop().await;
}

fn edge_static() -> &'static [(&'static str, &'static str)] {
    &[("X-Edge-Auth", "cdn-secret")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_password_set_up_reset_enrolled_users_and_forced_mfa() {
    let (s, gw, _, _) = seed_003_server(json!({})).await;
    let vault = user_client(&s, "vault-app", "vault").await;
    let login = || portal_login(&s, &vault);
    // Not enrolled (no MFA password) and MFA not forced: a USER token at once (seed 003's
    // MFA role).
    let (status, body) = login().await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );

    // Forced: MFA_PENDING, and the way on is to set an MFA password up.
    s.set(json!({"forced_mfa": true})).await;
    let (status, body) = login().await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("MFA_PENDING")),
        "{body}"
    );
    assert_eq!(body["mfa"][0]["type"], "mfa_password_setup", "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let setup = |form: Vec<(&'static str, String)>, bearer: String| {
        let s = &s;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            bearer_post(s, "/oauth/mfa/password/setup", &bearer, &form, &[]).await
        }
    };
    // Without the code that proves the user: refused.
    let (status, body) = setup(
        vec![("password", "correct horse battery".into())],
        pending.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = bearer_post(
        &s,
        "/oauth/mfa/otp/generate",
        &pending,
        &[
            ("identifierType", "mobile"),
            ("identifierValue", "+49 30 1234567"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let code = code_of(&gw, "/sms", 1).await;
    // Too short for mfa_password_regex (10 to 128 characters by default).
    let (status, body) = setup(
        vec![("password", "short".into()), ("otp", code.clone())],
        pending.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("^.{10,128}$")
    );
    let (status, body) = setup(
        vec![("password", "correct horse battery".into()), ("otp", code)],
        pending.clone(),
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    assert_eq!(s.audit("mfa_password_setup").await[0].result, "accept");

    // Enrolled now: asked for it, forced or not.
    s.set(json!({"forced_mfa": false})).await;
    let (_, body) = login().await;
    assert_eq!(body["mfa"][0]["type"], "mfa_password", "{body}");
    let pending = body["access_token"].as_str().unwrap().to_string();
    let (status, _) = bearer_post(
        &s,
        "/oauth/mfa",
        &pending,
        &[("password", "wrong horse battery")],
        &[],
    )
    .await;
    assert_eq!(status, 400);
    // Wrong MFA passwords sent at once in one session: no more are checked than the session
    // allows (mfa_max_password_attempts, 2 here), however many arrive together.
    s.set(json!({"mfa_max_password_attempts": 2})).await;
    let (_, body) = login().await;
    let burst = body["access_token"].as_str().unwrap().to_string();
    let guess = |n: usize| {
        let (s, burst) = (&s, burst.clone());
        async move {
            let pw = format!("guess number {n}");
            bearer_post(s, "/oauth/mfa", &burst, &[("password", &pw)], &[])
                .await
                .0
        }
    };
    let answers = tokio::join!(guess(1), guess(2), guess(3), guess(4), guess(5), guess(6));
    assert_eq!(answers, (400, 400, 400, 400, 400, 400));
    let reasons: Vec<String> = s
        .audit("authenticate")
        .await
        .iter()
        .take(6)
        .map(|r| r.reason.clone())
        .collect();
    let checked = reasons
        .iter()
        .filter(|r| r.starts_with("wrong password"))
        .count();
    assert_eq!(checked, 2, "{reasons:?}");
    s.set(json!({"mfa_max_password_attempts": 5})).await;
    // A second set-up is refused: that is a reset.
    let (status, body) = setup(
        vec![("password", "another horse battery".into())],
        pending.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = bearer_post(
        &s,
        "/oauth/mfa",
        &pending,
        &[("password", "correct horse battery")],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );

    // Reset without a code when mfa_skip_otp_validate_reset is on.
    s.set(json!({"mfa_skip_otp_validate_reset": true})).await;
    let (_, body) = login().await;
    let pending = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = bearer_post(
        &s,
        "/oauth/mfa/password/reset",
        &pending,
        &[("password", "a brand new passphrase")],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("USER")),
        "{body}"
    );
    for (mfa_password, expected) in [
        ("correct horse battery", None),
        ("a brand new passphrase", Some("USER")),
    ] {
        let (_, body) = login().await;
        let pending = body["access_token"].as_str().unwrap().to_string();
        let (_, body) = bearer_post(
            &s,
            "/oauth/mfa",
            &pending,
            &[("password", mfa_password)],
            &[],
        )
        .await;
        assert_eq!(body["role"].as_str(), expected, "{body}");
    }

    // An administrator removes it: alice is no longer enrolled.
    assert!(
        s.admin()
            .clear_mfa_password(&actor(), "alice", None)
            .await
            .unwrap()
    );
    let (_, body) = login().await;
    assert_eq!(body["role"], "USER", "{body}");

    // An MFA password cannot be the first factor.
    let bad: tessera_core::admin::Declaration = serde_json::from_value(json!({
        "application": [{"name": "bad", "factors": [{"methods": ["mfa_password"]}]}]
    }))
    .unwrap();
    let err = s
        .admin()
        .apply(&actor(), &bad, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("mfa_password is a second factor"), "{err}");
    s.stop().await;
}

/// An OIDC client of the application `intranet` (password, then TOTP) returning to `redirect`.
async fn oidc_client(s: &TestServer, redirect: &str) -> (String, String) {
    let c = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "intranet-rp".into(),
                kind: ApiClientKind::Oidc,
                application: Some("intranet".into()),
                redirect_uris: vec![redirect.to_string()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (
        c.client.client_id,
        c.client_secret.as_deref().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_code_flow_with_pkce_on_the_login_page_and_sso() {
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTP0040",
        None,
    )
    .await;
    s.use_app("intranet", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let redirect = "http://127.0.0.1:9/callback";
    let (id, secret) = oidc_client(&s, redirect).await;

    // authlib runs the code flow with PKCE; requests plays the browser on the login page.
    let seen = common::python_peer(
        "oauth",
        "oidc_peer.py",
        &[s.url.clone(), id.clone(), secret.clone(), redirect.into()],
        &json!({"username": "alice", "password": "alice-password",
                "totp_seed_b32": common::SEED_B32}),
    );
    let out = &seen[0];
    assert_eq!(out["discovery"]["issuer"], s.url.as_str());
    assert_eq!(
        out["discovery"]["code_challenge_methods_supported"],
        json!(["S256"])
    );
    let first = &out["first"];
    // Each sign-in given to the relying party is audited.
    let given = s.audit("oidc_sign_in").await;
    assert_eq!(given.len(), 2, "{given:?}");
    assert_eq!(given[0].actor, "oidc:intranet-rp");
    assert_eq!(given[0].user.as_deref(), Some("alice"));
    assert_eq!(
        first["pages"], 2,
        "the login page, then the OTP page: {out}"
    );
    // The subject is the user's id in its source (unique across realms, never reused), the
    // same in the ID token and at userinfo.
    let sub = first["claims"]["sub"].as_str().unwrap();
    assert!(sub.starts_with("local/") && sub != "local/alice", "{sub}");
    assert_eq!(first["userinfo"]["sub"], sub);
    assert_eq!(first["nonce_ok"], true);
    assert_eq!(first["iss"], json!([s.url.as_str()]));
    assert_eq!(first["userinfo"]["email"], "alice@example.org");
    assert_eq!(first["userinfo"]["preferred_username"], "alice");
    // The second sign-in in the same browser goes through the SSO session: no page.
    let second = &out["second"];
    assert_eq!(second["pages"], 0, "{out}");
    assert_eq!(second["claims"]["auth_time"], first["claims"]["auth_time"]);
    // The pages carry strict headers.
    let page = &out["pages"][0];
    let csp = page["headers"]["content-security-policy"].as_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert!(
        csp.contains("style-src 'self'"),
        "the stylesheet may load: {csp}"
    );
    assert_eq!(page["headers"]["x-frame-options"], "DENY");
    assert!(
        page["html"]
            .as_str()
            .unwrap()
            .contains("autocomplete=\"username\"")
    );
    assert!(
        out["pages"][1]["html"]
            .as_str()
            .unwrap()
            .contains("Please enter the OTP from your authenticator")
    );

    // RS256 for a relying party that needs it: a key made by OpenSSL, imported by the CLI,
    // published in the JWKS; PyJWT verifies the ID token with it. (Another user: alice's TOTP
    // code of this time step is used up.)
    s.add_user("dave", Some("dave-password")).await;
    s.enroll(
        "dave",
        tessera_core::model::TokenKind::Totp,
        "TOTP0041",
        None,
    )
    .await;
    let pem = s.config.data_dir.join("oidc-rs256.pem");
    let pem = pem.to_str().unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem,
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "--json",
            "oidc",
            "import-key",
            pem,
            "--data-dir",
            s.config.data_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let rs = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "legacy-rp".into(),
                kind: ApiClientKind::Oidc,
                application: Some("intranet".into()),
                redirect_uris: vec![redirect.to_string()],
                id_token_alg: Some("RS256".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seen = common::python_peer(
        "oauth",
        "oidc_peer.py",
        &[
            s.url.clone(),
            rs.client.client_id.clone(),
            rs.client_secret.as_deref().unwrap().to_string(),
            redirect.into(),
        ],
        &json!({"username": "dave", "password": "dave-password",
                "totp_seed_b32": common::SEED_B32, "alg": "RS256"}),
    );
    let rs_out = &seen[0];
    assert_eq!(
        rs_out["first"]["claims"]["aud"],
        rs.client.client_id.as_str(),
        "{rs_out}"
    );
    assert_eq!(
        rs_out["discovery"]["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    // A short key, or something that is not a key, is refused and the imported key stays.
    let jwks = || async {
        reqwest::get(format!("{}/oauth/jwks", s.url))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let before = jwks().await;
    let short = s.config.data_dir.join("short.pem");
    let short = short.to_str().unwrap();
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .args(["rsa_keygen_bits:1024", "-out", short])
        .output()
        .unwrap();
    assert!(made.status.success());
    for (file, why) in [
        (short, "at least 2048 bits"),
        ("Cargo.toml", "expected a PEM \"PRIVATE KEY\""),
    ] {
        let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["oidc", "import-key", file, "--data-dir"])
            .arg(&s.config.data_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(why), "{err}");
    }
    assert_eq!(jwks().await, before);
    assert_eq!(before["keys"].as_array().unwrap().len(), 2, "{before}");

    // A code is traded once, by its client, with its verifier.
    let (status, body) = post(
        &s,
        "/oauth/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", first["code"].as_str().unwrap()),
            ("redirect_uri", redirect),
            ("code_verifier", &"v".repeat(50)),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Requests the provider refuses, without following redirects.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |q: String| {
        let (browser, url) = (browser.clone(), s.url.clone());
        async move {
            let r = browser
                .get(format!("{url}/oidc/authorize?{q}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, location, r.text().await.unwrap())
        }
    };
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let good = format!(
        "response_type=code&client_id={id}&redirect_uri={}&scope=openid&state=s1&code_challenge={challenge}&code_challenge_method=S256",
        form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    // Unknown client, or a redirect URI not registered: a page, never a redirect.
    let (status, location, html) = authorize(good.replace(&id, "tc-nobody000000")).await;
    assert_eq!((status, location.as_str()), (400, ""));
    assert!(html.contains("not registered"), "{html}");
    let (status, location, _) = authorize(good.replace("9%2Fcallback", "9%2Fevil")).await;
    assert_eq!((status, location.as_str()), (400, ""));
    // No PKCE, or plain: sent back with an error and the state.
    let (status, location, _) = authorize(good.replace("&code_challenge_method=S256", "")).await;
    assert_eq!(status, 303);
    assert!(location.starts_with(redirect) && location.contains("error=invalid_request"));
    assert!(location.contains("state=s1"), "{location}");
    let (_, location, _) = authorize(good.replace("scope=openid", "scope=profile")).await;
    assert!(location.contains("error=invalid_scope"), "{location}");
    // A login form posted without the flow's cookie, or without the page's CSRF token (another
    // site's form), is refused and signs no one in.
    let r = browser
        .get(format!("{}/oidc/authorize?{good}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/login");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let flow_cookie = set_cookie.split(';').next().unwrap().to_string();
    let before = s.audit("authenticate").await.len();
    let login = |cookie: Option<String>, csrf: &'static str| {
        let (browser, url) = (browser.clone(), s.url.clone());
        async move {
            let mut req = browser.post(format!("{url}/login")).form(&[
                ("csrf", csrf),
                ("username", "alice"),
                ("answer", "alice-password"),
            ]);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        login(None, "").await,
        400,
        "no flow cookie: nothing to continue"
    );
    assert_eq!(login(Some(flow_cookie.clone()), "forged").await, 403);
    assert_eq!(
        s.audit("authenticate").await.len(),
        before,
        "nothing was tried"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_in_to_an_oidc_app_on_the_login_page() {
    let app = common::Provider::start().await;
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTP0041",
        None,
    )
    .await;
    s.use_app("intranet", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let redirect = format!("{}/callback", app.url);
    let (id, secret) = oidc_client(&s, &redirect).await;
    let verifier = "chromium-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let digest = data_encoding::HEXLOWER
        .decode(tessera_core::model::ApiClient::hash_secret(verifier).as_bytes())
        .unwrap();
    let challenge = data_encoding::BASE64URL_NOPAD.encode(&digest);
    let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let url = format!(
        "{}/oidc/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid%20profile&state=st-1&nonce=n-1&code_challenge={challenge}&code_challenge_method=S256",
        s.url,
        enc(&redirect)
    );
    // Screenshots of every page, for review: target/tmp/screenshots/oidc-login/.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/oidc-login");
    let _ = std::fs::remove_dir_all(&shots);
    let seen = common::python_peer(
        "browser",
        "browser_peer.py",
        &[url, shots.display().to_string()],
        &json!({"username": "alice", "password": "alice-password",
                "totp_seed_b32": common::SEED_B32, "redirect_prefix": redirect}),
    );
    let out = &seen[0];
    let pages = out["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2, "{out}");
    assert_eq!(pages[0]["heading"], "intranet");
    assert_eq!(pages[0]["title"], "Sign in – intranet");
    assert_eq!(
        pages[1]["prompt"],
        "Please enter the OTP from your authenticator"
    );
    // The stylesheet loaded under the page's Content-Security-Policy.
    assert_eq!(
        pages[0]["button_background"], "rgba(26, 95, 180, 1)",
        "{out}"
    );
    for p in pages {
        let png = std::fs::read(p["screenshot"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot");
    }
    assert!(shots.join("03-back-at-the-app.png").exists());
    // The browser is back at the application with a code, which the application trades.
    let final_url = out["final_url"].as_str().unwrap();
    let query: std::collections::HashMap<String, String> =
        form_urlencoded::parse(final_url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["state"], "st-1");
    assert_eq!(query["iss"], s.url);
    // Another client of the same application, which might come by the code and verifier.
    let other = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "other-rp".into(),
                kind: ApiClientKind::Oidc,
                application: Some("intranet".into()),
                redirect_uris: vec![redirect.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (other_id, other_secret) = (
        other.client.client_id,
        other.client_secret.as_deref().unwrap().to_string(),
    );
    let trade_as = |client: (String, String), v: String| {
        let (s, code, redirect) = (&s, &query["code"], &redirect);
        async move {
            post(
                s,
                "/oauth/token",
                Some((&client.0, &client.1)),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &v),
                ],
            )
            .await
        }
    };
    let trade = |v: String| trade_as((id.clone(), secret.clone()), v);
    let (status, body) = trade(verifier.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "n-1");
    assert!(claims["sub"].as_str().unwrap().starts_with("local/"));
    assert_eq!(claims["aud"], id.as_str());

    // The code presented again (RFC 6749 §4.1.2). Without the PKCE verifier, or by another
    // client, it proves nothing and revokes nothing; by the client with its verifier, the code
    // has leaked and the token it bought is revoked — once.
    let access = body["access_token"].as_str().unwrap().to_string();
    let userinfo = || {
        s.http
            .get(format!("{}/oidc/userinfo", s.url))
            .bearer_auth(&access)
            .send()
    };
    assert_eq!(userinfo().await.unwrap().status(), 200);
    // The token in a form body (RFC 6750 §2.2), as some relying parties send it; not in both.
    let by_form = s
        .http
        .post(format!("{}/oidc/userinfo", s.url))
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(by_form.status(), 200);
    let by_form: Value = by_form.json().await.unwrap();
    assert_eq!(by_form["sub"], claims["sub"]);
    let both = s
        .http
        .post(format!("{}/oidc/userinfo", s.url))
        .bearer_auth(&access)
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let (status, by_other) = trade_as((other_id, other_secret), verifier.to_string()).await;
    assert_eq!(
        (status, by_other["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo().await.unwrap().status(),
        200,
        "another client revokes nothing"
    );
    for v in ["w".repeat(50), verifier.to_string(), verifier.to_string()] {
        let (status, again) = trade(v.clone()).await;
        assert_eq!(
            (status, again["error"].as_str()),
            (400, Some("invalid_grant")),
            "{again}"
        );
        let still = userinfo().await.unwrap().status();
        if v == verifier {
            assert_eq!(still, 401, "the reused code's token is revoked");
        } else {
            assert_eq!(still, 200, "a wrong verifier revokes nothing");
            assert!(s.audit("oidc_code_reused").await.is_empty());
        }
    }
    let reused = s.audit("oidc_code_reused").await;
    assert_eq!(reused.len(), 1, "{reused:?}");
    assert_eq!(reused[0].user.as_deref(), Some("alice"));
    assert_eq!(reused[0].result, "ok");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refusals_logout_and_code_first_logins_answered_alike() {
    let gw = common::Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    let decl: tessera_core::admin::Declaration = serde_json::from_value(json!({
        "delivery_profile": [{"name": "gw", "type": "http",
            "url": format!("{}/sms", gw.url), "body": "to={phone}&text={message}"}],
        "settings": {"sms_delivery": "gw"},
        "application": [{"name": "intranet", "factors": [{"methods": ["sms_otp"]}]}]
    }))
    .unwrap();
    s.admin().apply(&actor(), &decl, false).await.unwrap();
    let redirect = "http://127.0.0.1:9/cb";
    let (id, secret) = oidc_client(&s, redirect).await;
    // Where the relying party may send its users after signing out (RP-Initiated Logout).
    let mut rp = s
        .admin()
        .get::<tessera_core::model::ApiClient>("intranet-rp")
        .unwrap();
    rp.post_logout_redirect_uris = vec!["http://127.0.0.1:9/bye".into()];
    s.admin().put(&actor(), rp).await.unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let url = |extra: &str| {
        format!(
            "{}/oidc/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=s&code_challenge={challenge}&code_challenge_method=S256{extra}",
            s.url
        )
    };
    let location = |extra: &'static str| {
        // A scope given in `extra` replaces the default one (parameters may not repeat).
        let u = match extra.strip_prefix("&scope=") {
            Some(scope) => url("").replace("scope=openid", &format!("scope={scope}")),
            None => url(extra),
        };
        let browser = browser.clone();
        async move {
            let r = browser.get(u).send().await.unwrap();
            r.headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
                .unwrap_or_default()
        }
    };
    // Scopes beyond OpenID Connect's, a nonce too long, prompt=none with another value.
    assert!(
        location("&scope=openid%20introspect")
            .await
            .contains("error=invalid_scope")
    );
    let long_nonce: &'static str =
        Box::leak(format!("&nonce={}", "n".repeat(300)).into_boxed_str());
    assert!(location(long_nonce).await.contains("error=invalid_request"));
    assert!(
        location("&prompt=none%20login")
            .await
            .contains("error=invalid_request")
    );
    assert!(
        location("&prompt=none")
            .await
            .contains("error=login_required")
    );

    // An application that starts with an SMS code: a known and an unknown user see the same
    // page; only the known one gets a code.
    let code_page = |user: &'static str| {
        let (browser, u, base) = (browser.clone(), url(""), s.url.clone());
        async move {
            let r = browser.get(u).send().await.unwrap();
            let cookie = r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let page = browser
                .get(format!("{base}/login"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                !page.contains("type=\"password\""),
                "no password asked: {page}"
            );
            let csrf = common::hidden_input(&page, "csrf");
            let r = browser
                .post(format!("{base}/login"))
                .header("cookie", &cookie)
                .form(&[("csrf", csrf.as_str()), ("username", user)])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap().replace(&csrf, "CSRF"))
        }
    };
    let known = code_page("alice").await;
    let unknown = code_page("nobody").await;
    assert_eq!(known.0, 200);
    assert!(
        known.1.contains("Please enter the code sent to your phone"),
        "{}",
        known.1
    );
    assert_eq!(known, unknown, "the same page for both");
    assert_eq!(gw.wait_for("/sms", 1).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(gw.requests("/sms").len(), 1, "no code for nobody");

    // Sign-out: a GET only asks; the form's POST ends the session.
    let sign_in = |n: usize| {
        let (browser, base, u, gw) = (browser.clone(), s.url.clone(), url(""), &gw);
        async move {
            let r = browser.get(u).send().await.unwrap();
            let flow = r.headers()["set-cookie"].to_str().unwrap();
            let flow = flow.split(';').next().unwrap().to_string();
            let page = browser
                .get(format!("{base}/login"))
                .header("cookie", &flow)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let csrf = common::hidden_input(&page, "csrf");
            let step = |form: Vec<(&'static str, String)>| {
                let (browser, base, flow) = (browser.clone(), base.clone(), flow.clone());
                async move {
                    browser
                        .post(format!("{base}/login"))
                        .header("cookie", flow)
                        .form(&form)
                        .send()
                        .await
                        .unwrap()
                }
            };
            step(vec![("csrf", csrf.clone()), ("username", "alice".into())]).await;
            let sms = gw.wait_for("/sms", n).await;
            let code: String = form_urlencoded::parse(sms[n - 1].body.as_bytes())
                .find(|(k, _)| k == "text")
                .map(|(_, v)| v.chars().filter(char::is_ascii_digit).take(6).collect())
                .unwrap();
            let r = step(vec![("csrf", csrf), ("answer", code)]).await;
            assert_eq!(r.status().as_u16(), 303);
            let sso = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .find(|c| c.starts_with("tessera_sso="))
                .unwrap();
            sso.split(';').next().unwrap().to_string()
        }
    };
    let sso = sign_in(2).await;
    let signed_in = |sso: String| {
        let (browser, u) = (browser.clone(), url("&prompt=none"));
        async move {
            let r = browser.get(u).header("cookie", sso).send().await.unwrap();
            r.headers()["location"].to_str().unwrap().contains("code=")
        }
    };
    assert!(signed_in(sso.clone()).await, "the SSO session serves");
    // A fresh code with a wrong verifier is refused — and used up; a fresh one with the right
    // verifier (RFC 7636's example pair) is traded.
    let fresh_code = |sso: String| {
        let (browser, u) = (browser.clone(), url("&prompt=none"));
        async move {
            let r = browser.get(u).header("cookie", sso).send().await.unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_string();
            form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap()
        }
    };
    let trade = |code: String, verifier: &'static str| {
        let (s, id, secret) = (&s, &id, &secret);
        async move {
            post(
                s,
                "/oauth/token",
                Some((id, secret)),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let right = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let code = fresh_code(sso.clone()).await;
    let (status, body) = trade(
        code.clone(),
        "wrong-verifier-0123456789-0123456789-0123456789",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("code_verifier does not match"),
        "{body}"
    );
    let (status, body) = trade(code, right).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = trade(fresh_code(sso.clone()).await, right).await;
    assert_eq!(status, 200, "{body}");
    // max_age=0: the session is too old to serve without a new sign-in.
    let r = browser
        .get(url("&max_age=0"))
        .header("cookie", &sso)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/login");
    // The relying party sends its user to /logout with where to go afterwards: an address
    // it did not register still signs out, to Tessera's own page (the address is not carried
    // by the form, and no redirect follows); its own is carried by the form.
    let bye = |uri: &str| {
        format!(
            "{}/logout?client_id={id}&post_logout_redirect_uri={}&state=bye-1",
            s.url,
            form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
        )
    };
    let r = browser
        .get(bye("https://evil.example/"))
        .header("cookie", &sso)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let asked = r.text().await.unwrap();
    assert!(!asked.contains("evil.example"), "{asked}");
    assert!(
        asked.contains("name=\"csrf\""),
        "the question is asked: {asked}"
    );
    let page = browser
        .get(bye("http://127.0.0.1:9/bye"))
        .header("cookie", &sso)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "name=\"post_logout_redirect_uri\" value=\"http:&#x2f;&#x2f;127.0.0.1:9&#x2f;bye\""
        ),
        "{page}"
    );
    assert!(signed_in(sso.clone()).await, "a GET of /logout only asks");
    let token = common::hidden_input(&page, "csrf");
    let r = browser
        .post(format!("{}/logout", s.url))
        .header("cookie", &sso)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = browser
        .post(format!("{}/logout", s.url))
        .header("cookie", &sso)
        .form(&[
            ("csrf", token.as_str()),
            ("client_id", id.as_str()),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye"),
            ("state", "bye-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        "http://127.0.0.1:9/bye?state=bye-1"
    );
    assert!(!signed_in(sso.clone()).await, "signed out");
    let ended = s.audit("sso_logout").await;
    assert!(
        ended[0].reason.contains("signed out at /logout"),
        "{:?}",
        ended[0]
    );
    // Without a session there is nothing to ask: straight back to the relying party.
    let r = browser
        .get(bye("http://127.0.0.1:9/bye"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        "http://127.0.0.1:9/bye?state=bye-1"
    );

    // The user's own list of sessions, and ending them there.
    let first = sign_in(3).await;
    let page = browser
        .get(format!("{}/login/sessions", s.url))
        .header("cookie", &first)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("(this browser)") && page.contains("intranet"),
        "{page}"
    );
    let token = common::hidden_input(&page, "csrf");
    let r = browser
        .post(format!("{}/login/sessions", s.url))
        .header("cookie", &first)
        .form(&[("csrf", token.as_str()), ("end", "all")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(!signed_in(first).await, "ended by the user");
    // An administrator lists and ends them: the admin call, and the CLI.
    let second = sign_in(4).await;
    let listed = s.admin().sso_sessions("alice", None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session.apps, vec!["intranet".to_string()]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .arg("--data-dir")
            .arg(&s.config.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let shown = cli(&["--json", "session", "list", "alice"]);
    assert_eq!(shown["sessions"][0]["id"], listed[0].id.as_str());
    let short: String = listed[0].id.chars().take(16).collect();
    assert_eq!(
        cli(&["--json", "session", "end", "alice", "--id", &short])["ended"],
        1
    );
    assert!(!signed_in(second).await, "ended by the administrator");
    assert_eq!(s.audit("sso_session_end").await.len(), 2);

    // An application's own idle limit (5 minutes) is shorter than the setting's (60).
    let mut app = s
        .admin()
        .get::<tessera_core::model::Application>("intranet")
        .unwrap();
    app.sso_idle_minutes = Some(5);
    s.admin().put(&actor(), app).await.unwrap();
    let third = sign_in(5).await;
    s.advance(4 * 60);
    assert!(signed_in(third.clone()).await, "used within 5 minutes");
    s.advance(4 * 60);
    assert!(
        signed_in(third.clone()).await,
        "the last use counts, not the sign-in"
    );
    s.advance(6 * 60);
    assert!(!signed_in(third).await, "idle for 6 minutes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_says_wrong_password_then_locked_for_any_name() {
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    s.set(json!({"max_password_attempts": 2})).await;
    let (id, _) = oidc_client(&s, "http://127.0.0.1:9/cb").await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!(
        "{}/oidc/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&ui_locales=tr",
        s.url
    );
    let r = browser.get(&url).send().await.unwrap();
    let flow = r.headers()["set-cookie"].to_str().unwrap();
    let flow = flow.split(';').next().unwrap().to_string();
    let page = browser
        .get(format!("{}/login", s.url))
        .header("cookie", &flow)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("lang=\"tr\"") && page.contains("Kullanıcı adı"),
        "{page}"
    );
    let csrf = common::hidden_input(&page, "csrf");
    let attempt = |user: &'static str| {
        let (browser, base, flow, csrf) =
            (browser.clone(), s.url.clone(), flow.clone(), csrf.clone());
        async move {
            browser
                .post(format!("{base}/login"))
                .header("cookie", flow)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("username", user),
                    ("answer", "wrong"),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    for user in ["alice", "nobody"] {
        assert!(
            attempt(user)
                .await
                .contains("Kullanıcı adı veya parola yanlış.")
        );
        assert!(
            attempt(user)
                .await
                .contains("Kullanıcı adı veya parola yanlış.")
        );
        let locked = attempt(user).await;
        assert!(
            locked.contains("Çok fazla hatalı deneme"),
            "{user}: {locked}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_tokens_reach_the_relying_party_when_sessions_end() {
    let rp = common::Provider::start().await;
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let redirect = "http://127.0.0.1:9/callback";
    let bcl = format!("{}/bcl", rp.url);
    let c = s
        .admin()
        .create_api_client(
            &actor(),
            NewApiClient {
                name: "wiki-rp".into(),
                kind: ApiClientKind::Oidc,
                application: Some("intranet".into()),
                redirect_uris: vec![redirect.to_string()],
                backchannel_logout_uri: Some(bcl.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (id, secret) = (
        c.client.client_id,
        c.client_secret.as_deref().unwrap().to_string(),
    );
    let args = [s.url.clone(), id.clone(), secret, redirect.to_string()];
    let sign_in = || {
        common::python_peer(
            "oauth",
            "oidc_peer.py",
            &args,
            &json!({"username": "alice", "password": "alice-password",
                    "totp_seed_b32": common::SEED_B32}),
        )
        .remove(0)
    };
    let first = sign_in();
    let claims = &first["first"]["claims"];
    let sid = claims["sid"].as_str().unwrap().to_string();
    assert!(sid.len() >= 20, "{first}");
    // The same session, the same sid.
    assert_eq!(first["second"]["claims"]["sid"], sid.as_str());
    assert_eq!(
        first["discovery"]["backchannel_logout_session_supported"],
        true
    );

    // An administrator ends the session with the CLI: the RP gets a logout token.
    let ended = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["session", "end", "alice", "--data-dir"])
        .arg(&s.config.data_dir)
        .output()
        .unwrap();
    assert!(ended.status.success(), "{ended:?}");
    let got = rp.wait_for("/bcl", 1).await;
    // Again through the admin API, after another sign-in (a new session, a new sid).
    let again = sign_in();
    let sid2 = again["first"]["claims"]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(sid2, sid);
    let token = s
        .admin_token("root", tessera_core::model::AdminRole::Admin)
        .await;
    let res = s
        .http
        .delete(format!("{}/api/v1/users/alice/sessions", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got2 = rp.wait_for("/bcl", 2).await;
    let tokens: Vec<String> = [&got[0], &got2[1]]
        .iter()
        .map(|r| {
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(r.body.as_bytes())
                    .into_owned()
                    .collect();
            form["logout_token"].clone()
        })
        .collect();
    // PyJWT verifies them as the relying party would.
    let seen = common::python_peer(
        "oauth",
        "oidc_peer.py",
        &args,
        &json!({"logout_tokens": tokens}),
    )
    .remove(0);
    let logout = seen["logout"].as_array().unwrap();
    for (t, want_sid) in logout.iter().zip([&sid, &sid2]) {
        assert_eq!(t["header"]["typ"], "logout+jwt", "{t}");
        assert_eq!(t["claims"]["sid"], want_sid.as_str());
        assert_eq!(t["claims"]["sub"], claims["sub"]);
        assert!(
            t["claims"]["events"]
                .get("http://schemas.openid.net/event/backchannel-logout")
                .is_some(),
            "{t}"
        );
        assert!(t["claims"].get("nonce").is_none());
    }
    let audited = s.audit("oidc_backchannel_logout").await;
    assert_eq!(audited.len(), 2);
    assert!(audited.iter().all(|a| a.result == "ok"), "{audited:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_is_tried_again_when_the_relying_party_is_down() {
    let rp = common::Provider::start().await;
    let s = oauth_server(Backend::Sqlite).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let redirect = "http://127.0.0.1:9/callback";
    // One relying party answers 500 once (a restart), one refuses the token (400).
    let mut sign_ins = Vec::new();
    for (name, path) in [("flaky-rp", "/flaky"), ("refusing-rp", "/refuse")] {
        let c = s
            .admin()
            .create_api_client(
                &actor(),
                NewApiClient {
                    name: name.into(),
                    kind: ApiClientKind::Oidc,
                    application: Some("intranet".into()),
                    redirect_uris: vec![redirect.to_string()],
                    backchannel_logout_uri: Some(format!("{}{path}", rp.url)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let args = [
            s.url.clone(),
            c.client.client_id,
            c.client_secret.as_deref().unwrap().to_string(),
            redirect.to_string(),
        ];
        let got = common::python_peer(
            "oauth",
            "oidc_peer.py",
            &args,
            &json!({"username": "alice", "password": "alice-password",
                    "totp_seed_b32": common::SEED_B32}),
        )
        .remove(0);
        assert!(got["first"]["claims"]["sid"].is_string(), "{got}");
        sign_ins.push(got);
    }
    // Each sign-in had its own browser: two sessions, ended at once by the CLI; the running
    // server tells the relying parties, and tries again.
    let ended = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["session", "end", "alice", "--data-dir"])
        .arg(&s.config.data_dir)
        .output()
        .unwrap();
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        String::from_utf8_lossy(&ended.stdout).contains("The running server tells"),
        "{ended:?}"
    );
    let started = std::time::Instant::now();
    while s.audit("oidc_backchannel_logout").await.len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the relying parties were not told"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The flaky one was tried again with a new token (its own jti: the relying party may have
    // taken the first), the refusing one was not.
    let flaky = rp.requests("/flaky");
    assert_eq!(flaky.len(), 2, "{flaky:?}");
    assert!(flaky.iter().all(|r| r.body.starts_with("logout_token=ey")));
    assert_ne!(flaky[0].body, flaky[1].body);
    assert_eq!(rp.requests("/refuse").len(), 1);
    let audited = s.audit("oidc_backchannel_logout").await;
    assert_eq!(audited.len(), 2, "{audited:?}");
    let by = |actor: &str| {
        audited
            .iter()
            .find(|a| a.actor == actor)
            .unwrap_or_else(|| panic!("no record of {actor}: {audited:?}"))
    };
    let flaky = by("api:flaky-rp");
    assert_eq!(flaky.result, "ok", "{flaky:?}");
    assert!(flaky.reason.contains("after 2 tries"), "{flaky:?}");
    let refused = by("api:refusing-rp");
    assert_eq!(refused.result, "error", "{refused:?}");
    assert!(refused.reason.contains("400"), "{refused:?}");
    assert!(!refused.reason.contains("tries"), "{refused:?}");
    s.stop().await;
}

/// Behind https (`public_url`), the flow and SSO cookies are `__Host-` cookies: Secure, for
/// this host only (no Domain), for the whole path, out of scripts' reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_cookies_are_host_only_and_secure() {
    let s = oauth_server(Backend::Sqlite).await;
    s.set(json!({"public_url": "https://sso.example.org"}))
        .await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let redirect = "http://127.0.0.1:9/cb";
    let (id, _) = oidc_client(&s, redirect).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookies = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    let strict = |c: &str| {
        c.contains("; Secure")
            && c.contains("; HttpOnly")
            && c.contains("; Path=/;")
            && c.contains("SameSite=Lax")
            && !c.to_ascii_lowercase().contains("domain=")
    };
    let r = browser
        .get(format!(
            "{}/oidc/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let flow = cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("__Host-tessera_flow="))
        .unwrap_or_else(|| panic!("{:?}", cookies(&r)));
    assert!(strict(&flow), "{flow}");
    let flow = flow.split(';').next().unwrap().to_string();
    // The cookie under its plain name is not the login's.
    let plain = flow.replacen("__Host-", "", 1);
    let page = |cookie: String| {
        let (browser, url) = (browser.clone(), format!("{}/login", s.url));
        async move {
            let r = browser
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    // Under its plain name it is no sign-in's cookie: /login starts a sign-in to the account
    // pages instead (a new flow, its page at once), and shows nothing of the OIDC sign-in.
    let r = browser
        .get(format!("{}/login", s.url))
        .header("cookie", plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("__Host-tessera_flow="))
        .unwrap();
    assert!(strict(&fresh) && !fresh.starts_with(&flow), "{fresh}");
    let (status, login) = page(flow.clone()).await;
    assert_eq!(status, 200);
    let r = browser
        .post(format!("{}/login", s.url))
        .header("cookie", &flow)
        .form(&[
            ("csrf", common::hidden_input(&login, "csrf").as_str()),
            ("username", "alice"),
            ("answer", "alice-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let sso = cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("__Host-tessera_sso="))
        .unwrap_or_else(|| panic!("{:?}", cookies(&r)));
    assert!(strict(&sso), "{sso}");
    s.stop().await;
}

/// OpenID Connect requires `/oidc/authorize` by GET and by POST (form-encoded body, §3.1.2.1):
/// a POST starts the same sign-in; a bad one is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_requests_come_by_get_or_post() {
    let s = oauth_server(Backend::Sqlite).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let redirect = "http://127.0.0.1:9/cb";
    let (id, _) = oidc_client(&s, redirect).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = [
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", redirect),
        ("scope", "openid"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ];
    let r = browser
        .post(format!("{}/oidc/authorize", s.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("tessera_flow=")
    );
    let mut unknown = form.to_vec();
    unknown[1] = ("client_id", "no-such-client");
    let r = browser
        .post(format!("{}/oidc/authorize", s.url))
        .form(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}
