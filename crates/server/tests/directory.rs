//! LDAP user sources end to end: a real OpenLDAP slapd (tessera-testkit's fixture directory)
//! behind a running server, logins through /validate/check with directory passwords, LDAP+OTP
//! (codes from oathtool), group and attribute rules, the user cache, a directory that is down,
//! injection attempts, and the CLI (`tessera apply`, `tessera ldap test`, `tessera user passwd`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, actor};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_core::model::{Application, Method, Realm, TokenKind, UserSourceDef};
use tessera_testkit::slapd::{BASE_DN, SVC_DN, SVC_PASSWORD, Slapd};

const T0: i64 = 1_800_000_010;
const BIN: &str = env!("CARGO_BIN_EXE_tessera");

both_backends!(
    directory_passwords_and_ldap_otp,
    group_and_attribute_rules,
    samlcheck_returns_the_attributes_asked_for,
);

fn ldap_source(name: &str, servers: &[&str]) -> UserSourceDef {
    serde_json::from_value(json!({
        "name": name,
        "type": "ldap",
        "ldap": {
            "directory": "openldap",
            "servers": servers,
            "base_dn": BASE_DN,
            "bind_dn": SVC_DN,
            "bind_password": SVC_PASSWORD,
            "attributes": {"extra": ["departmentNumber"]},
            "timeout_seconds": 2,
        }
    }))
    .unwrap()
}

/// A server whose default realm searches the directory `corp` (then the local users).
async fn with_directory(backend: Backend, d: &Slapd) -> TestServer {
    let s = TestServer::start(backend, Some(T0)).await;
    put_sources(
        &s,
        &[ldap_source("corp", &[&d.ldap_url])],
        &["corp", "local"],
    )
    .await;
    s
}

async fn put_sources(s: &TestServer, sources: &[UserSourceDef], realm: &[&str]) {
    for src in sources {
        s.admin().put(&actor(), src.clone()).await.unwrap();
    }
    s.admin()
        .put(
            &actor(),
            Realm {
                name: "default".into(),
                sources: realm.iter().map(|r| (*r).into()).collect(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
}

async fn use_app_json(s: &TestServer, app: Value) {
    let name = app["name"].as_str().unwrap().to_string();
    let app: Application = serde_json::from_value(app).unwrap();
    s.admin().put(&actor(), app).await.unwrap();
    s.set(json!({"validate_application": name})).await;
}

/// `/validate/samlcheck` returns the attributes `saml_attributes` names, the directory's own
/// (`attributes.extra`) among them; one value as text, several as a list.
async fn samlcheck_returns_the_attributes_asked_for(b: Backend) {
    let d = Slapd::start();
    let s = TestServer::start(b, Some(T0)).await;
    let mut src = ldap_source("corp", &[&d.ldap_url]);
    if let Some(ldap) = src.ldap.as_mut() {
        ldap.attributes.extra = vec!["departmentNumber".into(), "employeeType".into()];
    }
    put_sources(&s, &[src], &["corp", "local"]).await;
    use_app_json(
        &s,
        json!({"name": "sso", "factors": [{"methods": ["ldap"]}]}),
    )
    .await;
    let samlcheck = || async {
        let (status, body) = s
            .post(
                "/validate/samlcheck",
                &[("user", "alice"), ("pass", "alice-password")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["value"]["auth"], true, "{body}");
        body["result"]["value"]["attributes"].clone()
    };
    // The standard set by default.
    let a = samlcheck().await;
    assert_eq!(a["email"], "alice@example.org");
    assert!(a.get("departmentNumber").is_none(), "{a}");
    s.set(json!({"saml_attributes": "username, email, departmentNumber, employeeType, title"}))
        .await;
    let a = samlcheck().await;
    assert_eq!(a["username"], "alice");
    assert_eq!(a["departmentNumber"], "Engineering");
    assert_eq!(a["employeeType"], json!(["staff", "contractor"]));
    assert!(a.get("title").is_none() && a.get("groups").is_none(), "{a}");
    // A name that is no attribute name is refused, and nothing changes.
    let refused = s
        .admin()
        .update_settings(
            &actor(),
            serde_json::from_value(json!({"saml_attributes": "mail; drop"})).unwrap(),
        )
        .await;
    assert!(refused.is_err());
    s.stop().await;
}

async fn check(s: &TestServer, user: &str, pass: &str) -> String {
    s.check(&[("user", user), ("pass", pass)]).await.0
}

async fn directory_passwords_and_ldap_otp(b: Backend) {
    let d = Slapd::start();
    let s = with_directory(b, &d).await;

    // Directory passwords (the seeds' "LDAP" method).
    s.use_app("dir", &[&[Method::Password]]).await;
    assert_eq!(check(&s, "alice", "alice-password").await, "ACCEPT");
    assert_eq!(check(&s, "ALICE", "alice-password").await, "ACCEPT");
    assert_eq!(check(&s, "alice", "bob-password").await, "REJECT");
    assert_eq!(check(&s, "alice", "").await, "REJECT", "empty never binds");
    assert_eq!(check(&s, "carol", "carol-password").await, "ACCEPT");
    assert_eq!(check(&s, "nobody", "x").await, "REJECT");
    // Locked by the directory's password policy.
    assert_eq!(check(&s, "frank", "frank-password").await, "REJECT");
    assert_eq!(
        s.audit("authenticate").await.remove(0).reason,
        "user disabled (attempt 1 of 5)"
    );

    // LDAP+OTP in one field: the password, then the code of the user's token.
    let serial = s.enroll("alice", TokenKind::Totp, "TOTPLDAP1", None).await;
    assert_eq!(serial, "TOTPLDAP1");
    s.use_app("ldapotp", &[&[Method::PasswordOtp]]).await;
    let code = s.totp(0);
    assert_eq!(
        check(&s, "alice", &format!("wrong-pass{code}")).await,
        "REJECT"
    );
    assert_eq!(
        check(&s, "alice", "alice-password").await,
        "REJECT",
        "no code"
    );
    assert_eq!(
        check(&s, "alice", &format!("alice-password{code}")).await,
        "ACCEPT"
    );
    assert_eq!(
        check(&s, "alice", &format!("alice-password{code}")).await,
        "REJECT",
        "replayed code"
    );

    // Two factors: the directory password, then the OTP in a second round (the second leg
    // finds the user again by entryUUID).
    s.use_app("two", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let (result, body) = s
        .check(&[("user", "alice"), ("pass", "alice-password")])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.advance(30);
    let code = s.totp(0);
    let (result, _) = s
        .check(&[("user", "alice"), ("pass", &code), ("transaction_id", &tx)])
        .await;
    assert_eq!(result, "ACCEPT");

    // A second round may name the user as the first did, by another of its names.
    let mut corp = ldap_source("corp", &[&d.ldap_url]);
    corp.ldap.as_mut().unwrap().login_attributes = vec!["uid".into(), "mail".into()];
    s.admin().put(&actor(), corp).await.unwrap();
    let (result, body) = s
        .check(&[("user", "alice@example.org"), ("pass", "alice-password")])
        .await;
    assert_eq!(result, "CHALLENGE", "{body}");
    let tx = body["detail"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.advance(30);
    let code = s.totp(0);
    let (result, _) = s
        .check(&[("user", "carol"), ("pass", &code), ("transaction_id", &tx)])
        .await;
    assert_eq!(
        result, "REJECT",
        "another user cannot take the second round"
    );
    let (result, body) = s
        .check(&[
            ("user", "alice@example.org"),
            ("pass", &code),
            ("transaction_id", &tx),
        ])
        .await;
    assert_eq!(result, "ACCEPT", "{body}");

    // One lockout budget for every form of the name.
    s.set(json!({"max_password_attempts": 3})).await;
    s.use_app("dir", &[&[Method::Password]]).await;
    for name in ["bob", "BOB", " bob ", "bob@example.org"] {
        assert_eq!(check(&s, name, "wrong").await, "REJECT", "{name:?}");
    }
    assert_eq!(check(&s, "bob", "bob-password").await, "REJECT", "locked");
    assert_eq!(
        s.audit("authenticate").await.remove(0).reason,
        "account locked after too many failed attempts"
    );

    // The audit log says why logins failed.
    let reasons: Vec<String> = s
        .audit("authenticate")
        .await
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "wrong password (attempt 3 of 3)"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("unknown user")),
        "{reasons:?}"
    );
    s.stop().await;
}

async fn group_and_attribute_rules(b: Backend) {
    let d = Slapd::start();
    let s = with_directory(b, &d).await;
    s.admin()
        .put(
            &actor(),
            serde_json::from_value::<Application>(json!({
                "name": "vpn-strict",
                "factors": [{"methods": ["ldap+otp"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // Members of vpn-users (alice, through the nested group engineers) go to vpn-strict.
    use_app_json(
        &s,
        json!({
            "name": "vpn",
            "factors": [{"methods": ["ldap"]}],
            "routes": [{"attribute": "groups", "value": "vpn-*", "application": "vpn-strict"}]
        }),
    )
    .await;
    s.enroll("alice", TokenKind::Totp, "TOTPLDAP2", None).await;
    assert_eq!(check(&s, "alice", "alice-password").await, "REJECT");
    let code = s.totp(0);
    assert_eq!(
        check(&s, "alice", &format!("alice-password{code}")).await,
        "ACCEPT"
    );
    assert_eq!(
        check(&s, "carol", "carol-password").await,
        "ACCEPT",
        "not routed"
    );
    let apps: Vec<Option<String>> = s
        .audit("authenticate")
        .await
        .into_iter()
        .filter(|r| r.result == "accept")
        .map(|r| r.application)
        .collect();
    assert_eq!(apps, [Some("vpn".into()), Some("vpn-strict".into())]);

    // Method rules inside one factor: a regex on an attribute, a group, and nobody else.
    use_app_json(
        &s,
        json!({
            "name": "ruled",
            "factors": [{"rules": [
                {"attribute": "departmentNumber", "value": "regex:^eng", "method": "ldap+otp"},
                {"attribute": "memberOf", "value": "cn=admins,*", "method": "ldap"}
            ]}]
        }),
    )
    .await;
    s.advance(30);
    let code = s.totp(0);
    assert_eq!(check(&s, "alice", "alice-password").await, "REJECT");
    assert_eq!(
        check(&s, "alice", &format!("alice-password{code}")).await,
        "ACCEPT"
    );
    assert_eq!(check(&s, "bob", "bob-password").await, "ACCEPT");
    assert_eq!(check(&s, "carol", "carol-password").await, "REJECT");
    let last = s.audit("authenticate").await.remove(0);
    assert_eq!(last.reason, "no rule of the factor matches the user");

    // Routes must lead to an existing normal application.
    let bad: Application = serde_json::from_value(json!({
        "name": "vpn",
        "factors": [{"methods": ["ldap"]}],
        "routes": [{"attribute": "groups", "value": "x", "application": "nope"},
                   {"attribute": "groups", "value": "y", "source": "ghost", "application": "vpn-strict"}]
    }))
    .unwrap();
    let err = s.admin().put(&actor(), bad).await.unwrap_err().to_string();
    assert!(err.contains("application 'nope' does not exist"), "{err}");
    assert!(err.contains("user source 'ghost'"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_logs_in_with_ldap_otp_in_one_round_and_gets_group_attributes() {
    let d = Slapd::start();
    let s = with_directory(Backend::Sqlite, &d).await;
    s.enroll("alice", TokenKind::Totp, "TOTPLDAP4", None).await;
    s.admin()
        .put(
            &actor(),
            serde_json::from_value::<Application>(json!({
                "name": "vpn-1r", "factors": [{"methods": ["ldap+otp"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let secret = "s3cret-for-the-tests";
    let client: tessera_core::model::RadiusClient = serde_json::from_value(json!({
        "name": "vpn",
        "nas_ip": ["127.0.0.1"],
        "secret": secret,
        "application": "vpn-1r",
        "reply_rules": [
            {"priority": 10, "user_attribute": "groups", "equals": "vpn-users",
             "reply_attribute": "Fortinet-Group-Name", "value": "VPN"},
            {"priority": 20, "mode": "dynamic", "user_attribute": "departmentNumber",
             "reply_attribute": "Class"}
        ]
    }))
    .unwrap();
    s.admin().put(&actor(), client).await.unwrap();
    let auth = s.running.as_ref().unwrap().radius_auth_addr.unwrap();
    let login = |pass: String| {
        common::radclient(
            auth,
            "auth",
            secret,
            &format!("User-Name = alice\nUser-Password = {pass}\nMessage-Authenticator = 0x00\n"),
        )
    };
    let (ok, out) = login(format!("wrong-password{}", s.totp(0)));
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    let (ok, out) = login(format!("alice-password{}", s.totp(0)));
    assert!(ok, "{out}");
    assert_eq!(
        common::radclient_attr(&out, "Fortinet-Group-Name").as_deref(),
        Some("VPN"),
        "from the nested directory group"
    );
    let class = common::radclient_attr(&out, "Class").unwrap();
    let hex: String = "Engineering".bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        class,
        format!("0x{hex}"),
        "copied from the directory attribute"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_down_rejects_cleanly_and_the_next_source_answers() {
    let d = Slapd::start();
    let s = TestServer::start(Backend::Sqlite, Some(T0)).await;
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("ldap://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    put_sources(
        &s,
        &[
            ldap_source("down", &[&silent_url]),
            ldap_source("corp", &[&d.ldap_url]),
        ],
        &["down", "local"],
    )
    .await;
    s.add_user("zed", Some("zed-password")).await;
    s.admin()
        .put(
            &actor(),
            Realm {
                name: "locals".into(),
                sources: vec!["local".into()],
                description: String::new(),
            },
        )
        .await
        .unwrap();
    s.use_app("dir", &[&[Method::Password]]).await;

    let started = Instant::now();
    assert_eq!(check(&s, "alice", "alice-password").await, "REJECT");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let rec = s.audit("authenticate").await.remove(0);
    assert!(
        rec.reason
            .starts_with("user source unavailable: user source 'down' is unavailable"),
        "{}",
        rec.reason
    );
    // While the directory is down, later logins do not each wait for the timeout (one probe
    // every 5 s does), and the local source after it still answers for its users.
    let started = Instant::now();
    assert_eq!(check(&s, "alice", "alice-password").await, "REJECT");
    assert_eq!(check(&s, "zed", "zed-password").await, "ACCEPT");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let rec = s.audit("authenticate").await.remove(1);
    assert!(
        rec.reason
            .contains("every server failed within the last 30 s"),
        "{}",
        rec.reason
    );
    // A login waiting for a directory does not hold up logins elsewhere.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = {
        let (url, http) = (s.url.clone(), s.http.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/validate/check"))
                .form(&[("user", "alice"), ("pass", "alice-password")])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (result, _) = s
        .check(&[
            ("user", "zed"),
            ("pass", "zed-password"),
            ("realm", "locals"),
        ])
        .await;
    assert_eq!(result, "ACCEPT");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !waiting.is_finished(),
        "the directory login is still waiting"
    );
    assert!(waiting.await.unwrap().is_success());
    // Failures of the directory do not lock anybody out.
    s.set(json!({"max_password_attempts": 2})).await;
    for _ in 0..3 {
        assert_eq!(check(&s, "alice", "alice-password").await, "REJECT");
    }
    put_sources(&s, &[], &["corp", "local"]).await;
    assert_eq!(check(&s, "alice", "alice-password").await, "ACCEPT");
    // zed was found only because the directory before local was down: no password of such
    // a guess is changed.
    s.use_app("dir", &[&[Method::Password]]).await;
    put_sources(&s, &[], &["down", "local"]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let engine = &s.running.as_ref().unwrap().app.engine;
    let ctx = tessera_core::engine::RequestCtx::new(tessera_core::engine::Door::Api);
    let refused = engine
        .change_password("zed", None, None, "zed-new-password", &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("is unavailable; try again later"),
        "{refused}"
    );
    assert_eq!(
        check(&s, "zed", "zed-password").await,
        "ACCEPT",
        "unchanged"
    );
    hold.abort();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_cache_carries_otp_logins_over_a_directory_outage_until_it_expires() {
    let d = Slapd::start();
    let s = with_directory(Backend::Sqlite, &d).await;
    s.set(json!({"user_cache_seconds": 60})).await;
    s.enroll("alice", TokenKind::Totp, "TOTPLDAP3", None).await;
    s.use_app("otp", &[&[Method::SoftOtp]]).await;
    assert_eq!(check(&s, "alice", &s.totp(0)).await, "ACCEPT");
    drop(d);
    s.advance(30);
    assert_eq!(
        check(&s, "alice", &s.totp(0)).await,
        "ACCEPT",
        "from the cache"
    );
    s.advance(60);
    assert_eq!(
        check(&s, "alice", &s.totp(0)).await,
        "REJECT",
        "cache expired"
    );
    let rec = s.audit("authenticate").await.remove(0);
    assert!(
        rec.reason.starts_with("user source unavailable"),
        "{}",
        rec.reason
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_find_nobody_and_change_nothing() {
    let d = Slapd::start();
    let s = with_directory(Backend::Sqlite, &d).await;
    s.use_app("dir", &[&[Method::Password]]).await;
    s.set(json!({"max_password_attempts": 3})).await;
    for user in ["*", "a*", "*)(uid=*", "alice)(|(uid=*", "(uid=alice)"] {
        for pass in ["*", "alice-password", ""] {
            assert_eq!(check(&s, user, pass).await, "REJECT", "{user:?}/{pass:?}");
        }
    }
    // A name with a control character never reaches the directory: bad input.
    let (status, body) = s
        .post(
            "/validate/check",
            &[("user", "alice\u{0}"), ("pass", "alice-password")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["result"]["error"]["code"], 905, "{body}");
    let reasons: Vec<String> = s
        .audit("authenticate")
        .await
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("unknown user") || r.starts_with("missing")),
        "{reasons:?}"
    );
    // alice was not locked by any of it, and the directory is unchanged.
    assert_eq!(check(&s, "alice", "alice-password").await, "ACCEPT");
    assert!(d.can_bind(&format!("uid=alice,ou=people,{BASE_DN}"), "alice-password"));
    s.stop().await;
}

fn cli(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("USER", "tester")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_tests_and_changes_passwords_in_the_directory() {
    let d = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corp.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[user_source]]
name = "local"
type = "local"

[[user_source]]
name = "corp"
type = "ldap"
[user_source.ldap]
directory = "openldap"
servers = ["{ldaps}"]
ca_pem = """
{ca}"""
base_dn = "{BASE_DN}"
bind_dn = "{SVC_DN}"
bind_password = "{SVC_PASSWORD}"
attributes = {{ extra = ["departmentNumber"] }}

[[realm]]
name = "default"
sources = ["corp", "local"]

[[application]]
name = "default"
factors = [{{ methods = ["ldap"] }}]
"#,
            ldaps = d.ldaps_url,
            ca = d.ca_pem
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    // A profile with problems: every one is named, and nothing is applied.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[[user_source]]
name = "broken"
type = "ldap"
[user_source.ldap]
servers = ["http://dc1"]
base_dn = ""
user_filter = "(objectClass=person"
bind_dn = "cn=svc"
"#,
    )
    .unwrap();
    let (ok, _, err) = cli(&data, &["apply", bad.to_str().unwrap()], None);
    assert!(!ok);
    for want in [
        "'http://dc1' is not",
        "base_dn",
        "user_filter",
        "needs its password",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    let missing_ca = dir.path().join("missing-ca.toml");
    std::fs::write(
        &missing_ca,
        r#"
[[user_source]]
name = "pinned"
type = "ldap"
[user_source.ldap]
servers = ["ldaps://127.0.0.1"]
base_dn = "dc=example,dc=org"
ca_file = "/nonexistent/ca.pem"
"#,
    )
    .unwrap();
    let (ok, _, err) = cli(&data, &["apply", missing_ca.to_str().unwrap()], None);
    assert!(!ok);
    assert!(err.contains("ca_file /nonexistent/ca.pem"), "{err}");
    let (_, out, _) = cli(&data, &["source", "list"], None);
    assert!(!out.contains("broken") && !out.contains("pinned"), "{out}");

    let (ok, out, err) = cli(&data, &["apply", file.to_str().unwrap()], None);
    assert!(ok, "{out}{err}");

    // The bind password is sealed at rest and not exported.
    let (ok, exported, _) = cli(&data, &["export"], None);
    assert!(ok);
    assert!(!exported.contains(SVC_PASSWORD), "{exported}");
    assert!(exported.contains("bind_dn"), "{exported}");
    let db = std::fs::read(data.join("tessera.db")).unwrap();
    assert!(
        !db.windows(SVC_PASSWORD.len())
            .any(|w| w == SVC_PASSWORD.as_bytes())
    );
    // Applying the export (without the password) keeps the stored one...
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &exported).unwrap();
    let (ok, out, err) = cli(&data, &["apply", again.to_str().unwrap()], None);
    assert!(ok, "{out}{err}");
    // ...but not for other servers: they would be sent the stored password.
    let elsewhere = dir.path().join("elsewhere.toml");
    std::fs::write(
        &elsewhere,
        exported.replace(&d.ldaps_url, "ldaps://attacker.example"),
    )
    .unwrap();
    let (ok, _, err) = cli(&data, &["apply", elsewhere.to_str().unwrap()], None);
    assert!(!ok);
    assert!(err.contains("needs its password"), "{err}");

    // tessera ldap test: servers, service bind, the user with attributes and groups.
    let (ok, out, err) = cli(&data, &["ldap", "test", "corp", "alice"], None);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{}: ok, connected and bound as {SVC_DN}",
            d.ldaps_url
        )),
        "{out}"
    );
    for want in [
        "alice@example.org",
        "+4915100000001",
        "engineers, vpn-users",
        "Engineering",
        "bob",
    ] {
        assert!(out.contains(want), "{want} missing in\n{out}");
    }
    let (ok, out, _) = cli(&data, &["ldap", "test", "corp", "nobody"], None);
    assert!(!ok);
    assert!(out.contains("'nobody' NOT found"), "{out}");
    let (ok, out, _) = cli(&data, &["ldap", "test", "corp", "--json"], None);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["servers"][0]["ok"], true);
    let (ok, _, err) = cli(&data, &["ldap", "test", "local"], None);
    assert!(!ok && err.contains("not an LDAP one"), "{err}");

    // A running server on the same data: directory logins, then a reset by the CLI.
    let s = TestServer::start_configured(Backend::Sqlite, None, |c| {
        c.data_dir = data.clone();
        c.database_url = format!("sqlite://{}", data.join("tessera.db").display());
        c.master_key_file = data.join("master.key");
    })
    .await;
    assert_eq!(check(&s, "dave", "dave-password").await, "ACCEPT");
    let (ok, out, err) = cli(
        &data,
        &["user", "passwd", "dave", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok, "{out}");
    assert!(err.contains("does not meet the password policy"), "{err}");
    let (ok, out, err) = cli(
        &data,
        &["user", "passwd", "dave", "--password-stdin"],
        Some("dave-new-password\n"),
    );
    assert!(ok, "{out}{err}");
    assert!(d.can_bind(
        &format!("uid=dave,ou=people,{BASE_DN}"),
        "dave-new-password"
    ));
    assert_eq!(check(&s, "dave", "dave-new-password").await, "ACCEPT");
    assert_eq!(check(&s, "dave", "dave-password").await, "REJECT");

    // The same reset through the admin API.
    let token = s
        .admin_token("root", tessera_core::model::AdminRole::Admin)
        .await;
    let reset = |user: &'static str, password: &'static str| {
        let (s, token) = (&s, token.clone());
        async move {
            let r = s
                .http
                .post(format!("{}/api/v1/users/{user}/password", s.url))
                .bearer_auth(token)
                .json(&json!({ "password": password }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = reset("dave", "tiny").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password policy"),
        "{body}"
    );
    let (status, body) = reset("dave", "dave-api-password").await;
    assert_eq!(status, 200, "{body}");
    assert!(d.can_bind(
        &format!("uid=dave,ou=people,{BASE_DN}"),
        "dave-api-password"
    ));
    let (status, _) = reset("nobody", "whatever-password").await;
    assert_eq!(status, 400);
    let resets = s.audit("password_reset").await;
    assert_eq!(resets.len(), 5, "two by the CLI, three by the API");
    assert!(resets[0].actor.starts_with("admin:"), "{}", resets[0].actor);

    // The user's own change through the engine (what the password-reset panel calls).
    let engine = &s.running.as_ref().unwrap().app.engine;
    let ctx = tessera_core::engine::RequestCtx::new(tessera_core::engine::Door::Web);
    let wrong = engine
        .change_password("erin", None, Some("wrong"), "erin-new-password", &ctx)
        .await;
    assert_eq!(
        wrong.unwrap_err().to_string(),
        "the current password is wrong"
    );
    engine
        .change_password(
            "erin",
            None,
            Some("erin-password"),
            "erin-new-password",
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(check(&s, "erin", "erin-new-password").await, "ACCEPT");
    // Wrong current passwords count against the account's one budget, whatever its name form.
    s.set(json!({"max_password_attempts": 2})).await;
    for name in ["carol", " CAROL "] {
        let r = engine
            .change_password(name, None, Some("wrong"), "carol-new-password", &ctx)
            .await;
        assert_eq!(r.unwrap_err().to_string(), "the current password is wrong");
    }
    let r = engine
        .change_password(
            "carol",
            None,
            Some("carol-password"),
            "carol-new-password",
            &ctx,
        )
        .await;
    assert!(r.unwrap_err().to_string().contains("locked"));
    assert!(d.can_bind(&format!("uid=carol,ou=people,{BASE_DN}"), "carol-password"));
    let audit = s.audit("password_change").await;
    assert_eq!(audit.len(), 5);
    let audit = &audit[3..];
    assert_eq!(audit[0].result, "ok");
    assert_eq!(audit[1].reason, "the current password is wrong");
    s.stop().await;
}
