//! The admin REST API end to end: authentication and roles, users, tokens, configuration
//! objects, settings, the declarative configuration, audit. Bad input gets a 400 listing every
//! problem and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Api, Backend, SEED_B32, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_core::model::AdminRole;
use tessera_core::store::ConfigStore;

async fn setup(b: Backend) -> (TestServer, String) {
    let s = TestServer::start(b, None).await;
    let token = s.admin_token("root", AdminRole::Admin).await;
    (s, token)
}

both_backends!(
    every_route_needs_a_token_and_roles_limit,
    users_crud_and_validation,
    tokens_enroll_and_manage,
    seeds_are_read_in_the_format_given_never_guessed,
    configuration_objects_keep_references_intact,
    settings_are_checked_all_at_once,
    declarative_config_is_idempotent,
    radius_clients_keep_their_secrets_sealed_and_hidden,
);

async fn every_route_needs_a_token_and_roles_limit(b: Backend) {
    let (s, token) = setup(b).await;
    for (method, path) in tessera_http::ADMIN_ROUTES {
        let path = path
            .replace("{username}", "alice")
            .replace("{serial}", "X")
            .replace("{name}", "x");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = s
            .http
            .request(method.clone(), format!("{}/api/v1{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let res = s
            .http
            .request(method.clone(), format!("{}/api/v1{path}", s.url))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The OpenAPI document is public and describes these routes.
    let doc: Value = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/tokens"]["post"].is_object());
    assert!(doc["paths"]["/validate/check"]["post"].is_object());

    let auditor = Api {
        s: &s,
        token: s.admin_token("auditor", AdminRole::Auditor).await,
    };
    assert_eq!(auditor.get("/users").await.0, StatusCode::OK);
    let (status, body) = auditor.post("/users", json!({"username": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let service = Api {
        s: &s,
        token: s.admin_token("svc", AdminRole::Service).await,
    };
    assert_eq!(service.get("/users").await.0, StatusCode::FORBIDDEN);
    // Logging out ends the session.
    let root = Api { s: &s, token };
    assert_eq!(root.post("/logout", json!({})).await.0, StatusCode::OK);
    assert_eq!(root.get("/users").await.0, StatusCode::UNAUTHORIZED);
    // Wrong credentials at /auth.
    let (status, body) = s
        .post("/auth", &[("username", "root"), ("password", "wrong")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["result"]["error"]["code"], 4031);
    s.stop().await;
}

async fn users_crud_and_validation(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    let (status, body) = api
        .post(
            "/users",
            json!({"username": "alice", "password": "alice-password", "email": "alice@example.org",
                   "given_name": "Alice", "groups": ["vpn"], "expires_at": 4_000_000_000i64}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["has_password"], true);
    assert!(body.get("password_hash").is_none());
    assert_eq!(
        api.post("/users", json!({"username": "ALICE"})).await.0,
        StatusCode::CONFLICT
    );
    // Every problem at once; nothing created.
    let (status, body) = api
        .post(
            "/users",
            json!({"username": " bob", "password": "short", "email": "not-an-address", "phone": "call me"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["problems"].as_array().unwrap().len(),
        4,
        "{body}"
    );
    let (status, body) = api
        .post("/users", json!({"username": "bob", "colour": "blue"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let (_, list) = api.get("/users").await;
    assert_eq!(list["users"].as_array().unwrap().len(), 1);

    let (status, body) = api
        .patch(
            "/users/alice",
            json!({"email": null, "phone": "+49 30 123456", "enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], Value::Null);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["given_name"], "Alice");
    let (status, _) = api.patch("/users/alice", json!({"password": "tiny"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = api.get("/users?search=ali").await;
    assert_eq!(list["users"][0]["username"], "alice");
    assert_eq!(api.get("/users?source=nope").await.0, StatusCode::NOT_FOUND);

    api.post("/tokens", json!({"type": "totp", "user": "alice"}))
        .await;
    let (status, body) = api.delete("/users/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tokens_deleted"], 1);
    assert_eq!(api.get("/users/alice").await.0, StatusCode::NOT_FOUND);
    let audit = s.audit("user_delete").await;
    assert_eq!(audit[0].actor, "admin:root");
    assert_eq!(audit[0].client_ip.as_deref(), Some("127.0.0.1"));
    s.stop().await;
}

/// A hexadecimal key (privacyIDEA's `otpkey`) is imported with `secret_hex`; given as
/// `secret`, hexadecimal text is refused instead of being read as another key in base32; bad
/// input is refused and stores nothing.
async fn seeds_are_read_in_the_format_given_never_guessed(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    s.add_user("alice", None).await;
    // RFC 4226's test key; its HOTP value at counter 0 is 755224 (appendix D).
    let rfc_key = "3132333435363738393031323334353637383930";
    let (status, body) = api
        .post(
            "/tokens",
            json!({"type": "hotp", "user": "alice", "secret": rfc_key}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("secret_hex"), "{body}");
    // Hex made only of base32 characters (a-f, 2-7) was taken as base32 before: a different key.
    let base32_alike = "deadbeefcafe2345674455667722334455667722";
    let (status, body) = api
        .post(
            "/tokens",
            json!({"type": "hotp", "user": "alice", "secret": base32_alike}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for (bad, why) in [
        (json!({"secret_hex": "31323g"}), "not hexadecimal"),
        (json!({"secret_hex": "313"}), "not hexadecimal"),
        (json!({"secret_hex": "3132"}), "10 to 128 bytes"),
        (
            json!({"secret_hex": rfc_key, "secret": SEED_B32}),
            "give the seed once",
        ),
    ] {
        let mut req = json!({"type": "hotp", "user": "alice"});
        req.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (status, body) = api.post("/tokens", req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains(why), "{why}: {body}");
    }
    let (_, list) = api.get("/tokens").await;
    assert_eq!(
        list["tokens"].as_array().unwrap().len(),
        0,
        "nothing stored: {list}"
    );

    let (status, body) = api
        .post(
            "/tokens",
            json!({"type": "hotp", "user": "alice", "secret_hex": rfc_key, "serial": "RFC4226"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same key in base32, as the enrolment shows it.
    assert_eq!(body["secret"], SEED_B32);
    assert_eq!(
        tessera_testkit::oathtool(&["--hotp", "--counter=0", rfc_key]),
        "755224"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "755224")]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

async fn tokens_enroll_and_manage(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    s.add_user("alice", Some("alice-password")).await;
    let (status, body) = api
        .post(
            "/tokens",
            json!({"type": "totp", "user": "alice", "description": "phone"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let serial = body["token"]["serial"].as_str().unwrap().to_string();
    assert!(serial.starts_with("TOTP"));
    assert!(
        body["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Tessera:alice%40default?secret=")
    );
    assert_eq!(body["secret"].as_str().unwrap().len(), 32);
    assert!(
        body["image"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert!(body["svg"].as_str().unwrap().contains("<svg"));
    // The secret is shown only at enrollment.
    let (_, shown) = api.get(&format!("/tokens/{serial}")).await;
    assert!(shown.get("secret").is_none());
    assert_eq!(shown["description"], "phone");

    let (status, body) = api
        .post("/tokens", json!({"type": "totp", "user": "nobody", "digits": 7, "algorithm": "MD5", "secret": "!!"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["problems"].as_array().unwrap().len(),
        4,
        "{body}"
    );

    // Import an HOTP token, with its otpauth URI, and a fixed serial.
    let uri = format!("otpauth://hotp/Old:alice?secret={SEED_B32}&counter=0");
    let (status, body) = api
        .post(
            "/tokens",
            json!({"type": "hotp", "user": "alice", "secret": uri, "serial": "OATHIMPORT"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        api.post(
            "/tokens",
            json!({"type": "hotp", "user": "alice", "serial": "OATHIMPORT"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let check = |pass: String| {
        let s = &s;
        async move { s.check(&[("user", "alice"), ("pass", &pass)]).await.0 }
    };
    assert_eq!(check(s.hotp(0)).await, "ACCEPT");
    // Resync from two consecutive codes far beyond the window.
    let (status, body) = api
        .post(
            "/tokens/OATHIMPORT/resync",
            json!({"otp1": s.hotp(500), "otp2": s.hotp(501)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counter"], 502);
    assert_eq!(check(s.hotp(502)).await, "ACCEPT");
    let (status, _) = api
        .post(
            "/tokens/OATHIMPORT/resync",
            json!({"otp1": s.hotp(600), "otp2": s.hotp(700)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Disable, enable, PIN.
    let (_, body) = api
        .patch("/tokens/OATHIMPORT", json!({"state": "disabled"}))
        .await;
    assert_eq!(body["state"], "disabled");
    assert_eq!(check(s.hotp(503)).await, "REJECT");
    let (_, body) = api
        .patch(
            "/tokens/OATHIMPORT",
            json!({"state": "enabled", "pin": "9876", "max_fail": 4}),
        )
        .await;
    assert_eq!(
        (body["has_pin"].clone(), body["max_fail"].clone()),
        (json!(true), json!(4))
    );
    assert_eq!(check(s.hotp(504)).await, "REJECT", "PIN needed now");
    assert_eq!(check(format!("9876{}", s.hotp(505))).await, "ACCEPT");
    // A bad PIN changes nothing else.
    let (status, _) = api
        .patch("/tokens/OATHIMPORT", json!({"pin": "", "description": "x"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/tokens/OATHIMPORT").await.1["description"], "");
    // Reset, revoke (final).
    let (_, body) = api.post("/tokens/OATHIMPORT/reset", json!({})).await;
    assert_eq!(body["fail_count"], 0);
    let (_, body) = api
        .patch("/tokens/OATHIMPORT", json!({"state": "revoked"}))
        .await;
    assert_eq!(body["state"], "revoked");
    assert_eq!(
        api.patch("/tokens/OATHIMPORT", json!({"state": "enabled"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(check(format!("9876{}", s.hotp(506))).await, "REJECT");
    let (_, list) = api.get("/tokens?user=alice").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert_eq!(api.delete("/tokens/OATHIMPORT").await.0, StatusCode::OK);
    assert_eq!(api.get("/tokens/OATHIMPORT").await.0, StatusCode::NOT_FOUND);
    let actions: Vec<String> = s
        .audit("token_enroll")
        .await
        .iter()
        .map(|r| r.reason.clone())
        .collect();
    assert_eq!(actions.len(), 2);
    s.stop().await;
}

async fn configuration_objects_keep_references_intact(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    let (status, body) = api
        .post("/applications", json!({"name": "vpn", "type": "normal", "factors": [{"methods": ["ldap"]}, {"methods": ["soft_otp"]}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["factors"][0]["methods"],
        json!(["password"]),
        "seed names map to methods"
    );
    assert_eq!(
        api.post(
            "/applications",
            json!({"name": "vpn", "factors": [{"methods": ["password"]}]})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (status, _) = api
        .post(
            "/applications",
            json!({"name": "x", "factors": [{"methods": ["telepathy"]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .post("/applications", json!({"name": "bad name", "factors": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["problems"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert_eq!(
        api.put(
            "/applications/other",
            json!({"name": "vpn", "factors": [{"methods": ["password"]}]})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = api
        .put(
            "/applications/vpn",
            json!({"name": "vpn", "factors": [{"methods": ["password+otp"]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = api
        .post("/realms", json!({"name": "corp", "sources": ["ad"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("user source 'ad' does not exist")
    );
    assert_eq!(
        api.post("/user-sources", json!({"name": "staff", "type": "local"}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post(
            "/realms",
            json!({"name": "corp", "sources": ["staff", "local"]})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    // Referenced objects cannot be deleted.
    let (status, body) = api.delete("/user-sources/staff").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        api.delete("/applications/default").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.delete("/realms/default").await.0,
        StatusCode::BAD_REQUEST
    );
    // A user in the new source, found through the new realm.
    let (status, _) = api
        .post(
            "/users",
            json!({"username": "carol", "source": "staff", "password": "carol-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    s.use_app("pw", &[&[tessera_core::model::Method::Password]])
        .await;
    assert_eq!(
        s.check(&[("user", "carol@corp"), ("pass", "carol-password")])
            .await
            .0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[
            ("user", "carol"),
            ("realm", "corp"),
            ("pass", "carol-password")
        ])
        .await
        .0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[("user", "carol"), ("pass", "carol-password")])
            .await
            .0,
        "REJECT",
        "not in the default realm"
    );
    // A source holding users cannot go.
    assert_eq!(api.delete("/realms/corp").await.0, StatusCode::OK);
    assert_eq!(
        api.delete("/user-sources/staff").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.delete("/applications/nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, apps) = api.get("/applications").await;
    assert_eq!(apps["applications"].as_array().unwrap().len(), 3);
    s.stop().await;
}

async fn settings_are_checked_all_at_once(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    let (_, before) = api.get("/settings").await;
    let (status, body) = api
        .patch("/settings", json!({"prepend_pin": "sometimes", "default_otp_length": 7, "no_such": 1, "default_realm": "nowhere", "otp_issuer": "ACME"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["problems"].as_array().unwrap().len(),
        4,
        "{body}"
    );
    assert_eq!(api.get("/settings").await.1, before, "nothing changed");
    let (status, body) = api
        .patch(
            "/settings",
            json!({"otp_issuer": "ACME", "default_otp_length": 8}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["otp_issuer"], "ACME");
    s.add_user("alice", None).await;
    let (_, enrolled) = api
        .post("/tokens", json!({"type": "totp", "user": "alice"}))
        .await;
    assert_eq!(
        enrolled["token"]["digits"], 8,
        "token defaults apply at enrollment"
    );
    assert!(enrolled["uri"].as_str().unwrap().contains("issuer=ACME"));
    s.stop().await;
}

async fn declarative_config_is_idempotent(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    let decl = json!({
        "settings": {"lock_period_minutes": 10},
        "user_source": [{"name": "local", "type": "local"}, {"name": "contractors", "type": "local"}],
        "realm": [{"name": "default", "sources": ["local"]}, {"name": "ext", "sources": ["contractors"]}],
        "application": [{"name": "default", "factors": [{"methods": ["soft_otp"]}]},
                        {"name": "vpn", "factors": [{"methods": ["password"]}, {"methods": ["soft_otp"]}]}]
    });
    let (status, body) = api.post("/config?dry_run=true", decl.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ops: Vec<&str> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops.iter().filter(|o| **o == "create").count(), 3, "{body}");
    assert_eq!(ops.iter().filter(|o| **o == "setting").count(), 1);
    assert_eq!(
        api.get("/realms/ext").await.0,
        StatusCode::NOT_FOUND,
        "dry run changed nothing"
    );
    let (status, _) = api.post("/config", decl.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/realms/ext").await.0, StatusCode::OK);
    assert_eq!(api.get("/settings").await.1["lock_period_minutes"], 10);
    let (_, again) = api.post("/config", decl.clone()).await;
    assert!(
        again["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["op"] == "keep"),
        "{again}"
    );
    let (_, exported) = api.get("/config").await;
    let (_, again) = api.post("/config?prune=true", exported).await;
    assert_eq!(again["changes"], json!([]), "export applies cleanly");
    // Prune removes what the document leaves out; a broken document changes nothing.
    let (status, body) = api
        .post(
            "/config?prune=true",
            json!({"realm": [{"name": "default", "sources": ["gone"]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["problems"].as_array().unwrap().len() >= 2,
        "{body}"
    );
    assert_eq!(api.get("/applications/vpn").await.0, StatusCode::OK);
    let mut smaller = decl.clone();
    smaller["application"] = json!([{"name": "default", "factors": [{"methods": ["soft_otp"]}]}]);
    let (status, body) = api.post("/config?prune=true", smaller).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get("/applications/vpn").await.0, StatusCode::NOT_FOUND);
    let (_, audit) = api.get("/audit?action=config_apply&limit=100").await;
    assert!(audit["records"].as_array().unwrap().iter().any(|r| {
        r["reason"]
            .as_str()
            .unwrap()
            .contains("delete application 'vpn'")
    }));
    s.stop().await;
}

async fn radius_clients_keep_their_secrets_sealed_and_hidden(b: Backend) {
    let (s, token) = setup(b).await;
    let api = Api { s: &s, token };
    // Every problem at once, nothing created.
    let (status, body) = api
        .post(
            "/radius-clients",
            json!({"name": "fw", "nas_ip": ["10.0.0.300"], "secret": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .post(
            "/radius-clients",
            json!({"name": "fw", "nas_ip": [], "secret": "short", "application": "nope",
                   "reply_rules": [{"user_attribute": "groups", "equals": "x",
                                    "reply_attribute": "No-Such-Attr", "value": "1"},
                                   {"user_attribute": "groups", "equals": "x",
                                    "reply_attribute": "Session-Timeout", "value": "soon"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems = body["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 5, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("No-Such-Attr") && text.contains("'soon' is not a valid number"),
        "{text}"
    );
    let (status, body) = api
        .post(
            "/radius-clients",
            json!({"name": "fw", "nas_ip": ["10.0.0.0/24"]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a new client needs a secret: {body}"
    );
    assert_eq!(api.get("/radius-clients/fw").await.0, StatusCode::NOT_FOUND);

    let (status, body) = api
        .post(
            "/radius-clients",
            json!({"name": "fw", "device_type": "firewall", "nas_ip": ["10.0.0.0/24", "192.0.2.7"],
                   "secret": "a-long-shared-secret", "application": "default",
                   "reply_rules": [{"user_attribute": "groups", "equals": "admins",
                                    "reply_attribute": "Fortinet-Group-Name", "value": "Admin"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body.get("secret").is_none(),
        "answers never show the secret: {body}"
    );
    assert_eq!(body["nas_ip"], json!(["10.0.0.0/24", "192.0.2.7"]));
    let (_, list) = api.get("/radius-clients").await;
    assert!(!list.to_string().contains("a-long-shared-secret"), "{list}");
    let (_, shown) = api.get("/radius-clients/fw?show_secret=true").await;
    assert_eq!(shown["secret"], "a-long-shared-secret");
    // Auditors read clients but not their secrets.
    let auditor = Api {
        s: &s,
        token: s.admin_token("eve", AdminRole::Auditor).await,
    };
    assert_eq!(auditor.get("/radius-clients/fw").await.0, StatusCode::OK);
    assert_eq!(
        auditor.get("/radius-clients/fw?show_secret=true").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        auditor.get("/config?show_secrets=true").await.0,
        StatusCode::FORBIDDEN
    );
    // Replacing without a secret keeps the stored one.
    let mut changed = shown.clone();
    changed.as_object_mut().unwrap().remove("secret");
    changed["description"] = json!("edge firewall");
    let (status, body) = api.put("/radius-clients/fw", changed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, shown) = api.get("/radius-clients/fw?show_secret=true").await;
    assert_eq!(shown["secret"], "a-long-shared-secret");
    assert_eq!(shown["description"], "edge firewall");
    // The sealed secret is not in the database in the clear.
    let docs = s
        .running
        .as_ref()
        .unwrap()
        .app
        .store
        .config_docs(tessera_core::store::ConfigKind::RadiusClient)
        .await
        .unwrap();
    assert!(!docs[0].body.to_string().contains("a-long-shared-secret"));
    assert!(docs[0].body["secret_sealed"].is_string());
    // Exports leave secrets out unless asked; applying an export changes nothing.
    let (_, exported) = api.get("/config").await;
    assert!(!exported.to_string().contains("a-long-shared-secret"));
    let (_, again) = api.post("/config?prune=true", exported).await;
    assert_eq!(again["changes"], json!([]), "{again}");
    let (_, full) = api.get("/config?show_secrets=true").await;
    assert_eq!(full["radius_client"][0]["secret"], "a-long-shared-secret");
    // A changed secret shows as changed in the plan and the audit, never in the clear.
    let mut rotated = full.clone();
    rotated["radius_client"][0]["secret"] = json!("another-long-secret");
    let (status, body) = api.post("/config", rotated).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("another-long-secret"), "{body}");
    assert!(body.to_string().contains("*** (changed)"), "{body}");
    let (_, audit) = api.get("/audit?action=config_apply&limit=100").await;
    assert!(!audit.to_string().contains("long-secret"), "{audit}");
    // An application in use by a client cannot go.
    let (status, _) = api.delete("/applications/default").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.delete("/radius-clients/fw").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/radius-clients/fw").await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}
