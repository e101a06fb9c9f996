//! The SAML 2.0 identity provider against a service provider that is not ours (pysaml2, which
//! checks signatures with xmlsec1), and our signatures checked by the `xmlsec1` program itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, tessera, tessera_ok};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera_core::model::{Method, TokenKind};
use tessera_core::store::{WebStateKind, WebStateStore};

const SP: &str = "http://127.0.0.1:9/sp";
const ACS: &str = "http://127.0.0.1:9/acs";
const VAULT: &str = "http://127.0.0.1:9/vault";
/// Now, as SAML writes it.
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{now}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A 1×1 PNG.
const PIXEL: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A self-signed RSA key and certificate made by OpenSSL.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (
        key.to_str().unwrap().to_string(),
        cert.to_str().unwrap().to_string(),
    )
}

fn peer(s: &TestServer, dir: &Path, sp: &(String, String), steps: &Value) -> Value {
    peer_as(s, dir, sp, SP, ACS, steps)
}

fn peer_as(
    s: &TestServer,
    dir: &Path,
    sp: &(String, String),
    entity: &str,
    acs: &str,
    steps: &Value,
) -> Value {
    common::python_peer(
        "saml",
        "saml_peer.py",
        &[
            s.url.clone(),
            entity.into(),
            acs.into(),
            sp.0.clone(),
            sp.1.clone(),
            dir.to_str().unwrap().into(),
        ],
        steps,
    )
    .remove(0)
}

/// `xmlsec1 --verify` of a response's signature of `node` (Response or Assertion) with the
/// IdP's certificate only.
fn xmlsec_verifies(dir: &Path, xml: &str, node: &str, cert: &str) -> bool {
    let file = dir.join("response.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmlsec1")
        .args([
            "--verify",
            "--enabled-key-data",
            "rsa,x509",
            "--pubkey-cert-pem",
            cert,
        ])
        .args([
            "--id-attr:ID",
            &format!("urn:oasis:names:tc:SAML:2.0:{node}"),
        ])
        .args([
            "--node-xpath",
            &format!(
                "//*[local-name()='Signature' and parent::*[local-name()='{}']]",
                node.split(':').next_back().unwrap()
            ),
        ])
        .arg(&file)
        .output()
        .unwrap();
    out.status.success()
}

both_backends!(
    pysaml2_signs_in_over_both_bindings_and_xmlsec1_checks_our_signatures,
    pysaml2_single_logout_reaches_every_sp_of_the_session,
    pysaml2_gets_oid_attributes_and_the_authn_context_it_asks_for,
);

const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";
const PPT: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

/// The standard attributes go under their OID names (NameFormat uri, FriendlyName beside),
/// with eduPersonPrincipalName in the scope the metadata publishes; the authentication context
/// asserted is what the sign-in proved (REFEDS MFA after a password and a code), requests
/// for a context are met or refused with NoAuthnContext — never met by a user who skipped the
/// code under a rollout policy.
async fn pysaml2_gets_oid_attributes_and_the_authn_context_it_asks_for(b: Backend) {
    let s = TestServer::start(b, None).await;
    s.set(json!({"public_url": s.url, "saml_scope": "example.org"}))
        .await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0051", None).await;
    s.use_app("wiki", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    // Users without a token yet pass with the password alone (a rollout).
    tessera_ok(&s, &["app", "set", "wiki", "--pass-on-no-token", "true"]);
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let idp = key_pair(&dir, "idp");
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);
    let sp_keys = key_pair(&dir, "sp");
    let sp_meta = peer(&s, &dir, &sp_keys, &json!({"cmd": "metadata"}));
    let meta_file = dir.join("sp-metadata.xml");
    std::fs::write(&meta_file, sp_meta["metadata"].as_str().unwrap()).unwrap();
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "wiki",
            "--application",
            "wiki",
            "--metadata",
            meta_file.to_str().unwrap(),
        ],
    );
    s.admin().engine().reload().await.unwrap();
    // The scope is in the (signed) metadata.
    let published = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        published.contains(
            "<shibmd:Scope xmlns:shibmd=\"urn:mace:shibboleth:metadata:1.0\" regexp=\"false\">example.org</shibmd:Scope>"
        ),
        "{published}"
    );
    assert!(xmlsec_verifies(
        &dir,
        &published,
        "metadata:EntityDescriptor",
        &idp.1
    ));
    let exact = |classes: &[&str]| json!({"comparison": "exact", "classes": classes});
    let seen = peer(
        &s,
        &dir,
        &sp_keys,
        &json!({
            "cmd": "sso", "username": "alice", "password": "alice-password",
            "totp_seed_b32": common::SEED_B32,
            "runs": [
                // Alice: password and code, nothing asked.
                {"binding": "redirect", "sign": true},
                // The same session, REFEDS MFA asked: met.
                {"binding": "redirect", "sign": true, "context": exact(&[REFEDS_MFA])},
                // At least a password: met, named as it happened.
                {"binding": "redirect", "sign": true,
                 "context": {"comparison": "minimum", "classes": [PPT]}},
                // A class Tessera never asserts: refused before any page.
                {"binding": "redirect", "sign": true, "context": exact(&["urn:example:smartcard"])},
                // Bob has no token: the password alone passes, REFEDS MFA is not met.
                {"binding": "redirect", "sign": true, "new_browser": true, "username": "bob",
                 "password": "bob-password", "context": exact(&[REFEDS_MFA])},
                // Bob asking nothing: signed in, as password-protected transport.
                {"binding": "redirect", "sign": true},
            ]
        }),
    );
    let runs = seen["runs"].as_array().unwrap();
    let alice = &runs[0];
    assert!(alice.get("error").is_none(), "{alice}");
    assert_eq!(alice["authn_context"], json!([REFEDS_MFA]), "{alice}");
    let ava = &alice["ava"];
    assert_eq!(ava["uid"], json!(["alice"]), "{ava}");
    assert_eq!(ava["mail"], json!(["alice@example.org"]), "{ava}");
    assert_eq!(ava["givenName"], json!(["Given"]), "{ava}");
    assert_eq!(ava["sn"], json!(["Sur"]), "{ava}");
    assert_eq!(ava["displayName"], json!(["Given Sur"]), "{ava}");
    assert_eq!(
        ava["eduPersonPrincipalName"],
        json!(["alice@example.org"]),
        "{ava}"
    );
    assert_eq!(ava["isMemberOf"], json!(["staff"]), "{ava}");
    let xml = alice["xml"].as_str().unwrap();
    assert!(
        xml.contains(
            "Name=\"urn:oid:0.9.2342.19200300.100.1.3\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:uri\" FriendlyName=\"mail\""
        ),
        "{xml}"
    );
    assert!(!xml.contains("attrname-format:basic"), "{xml}");
    assert_eq!(runs[1]["pages"], 0, "{}", runs[1]);
    assert_eq!(runs[1]["authn_context"], json!([REFEDS_MFA]), "{}", runs[1]);
    assert_eq!(runs[2]["authn_context"], json!([REFEDS_MFA]), "{}", runs[2]);
    let unknown = &runs[3];
    assert_eq!(unknown["pages"], 0, "{unknown}");
    assert!(unknown.get("error").is_some(), "{unknown}");
    assert!(
        unknown["xml"]
            .as_str()
            .unwrap()
            .contains("status:NoAuthnContext"),
        "{unknown}"
    );
    let bob = &runs[4];
    assert!(bob["pages"].as_u64().unwrap() >= 1, "{bob}");
    assert!(bob.get("error").is_some(), "{bob}");
    let bob_xml = bob["xml"].as_str().unwrap();
    assert!(bob_xml.contains("status:NoAuthnContext"), "{bob}");
    assert!(!bob_xml.contains("<saml:Assertion"), "{bob}");
    let bob_plain = &runs[5];
    assert!(bob_plain.get("error").is_none(), "{bob_plain}");
    assert_eq!(bob_plain["authn_context"], json!([PPT]), "{bob_plain}");
    assert_eq!(bob_plain["ava"]["uid"], json!(["bob"]), "{bob_plain}");

    // Short names for SPs that match on them.
    tessera_ok(
        &s,
        &["saml", "sp", "set", "wiki", "--attribute-names", "basic"],
    );
    s.admin().engine().reload().await.unwrap();
    let seen = peer(
        &s,
        &dir,
        &sp_keys,
        &json!({
            "cmd": "sso", "username": "bob", "password": "bob-password",
            "totp_seed_b32": common::SEED_B32,
            "runs": [{"binding": "redirect", "sign": true}]
        }),
    );
    let basic = &seen["runs"][0];
    assert!(basic.get("error").is_none(), "{basic}");
    let xml = basic["xml"].as_str().unwrap();
    assert!(
        xml.contains(
            "Name=\"mail\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\""
        ),
        "{xml}"
    );
    assert_eq!(basic["ava"]["groups"], json!(["staff"]), "{basic}");
    assert!(!xml.contains("urn:oid:"), "{xml}");
}

async fn pysaml2_signs_in_over_both_bindings_and_xmlsec1_checks_our_signatures(b: Backend) {
    let s = TestServer::start(b, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0050", None).await;
    s.use_app("wiki", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();

    // Before a key is imported the metadata says what to do.
    let meta = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap();
    assert_eq!(meta.status(), 503);
    assert!(
        meta.text()
            .await
            .unwrap()
            .contains("tessera saml import-key")
    );

    // The IdP's key: a certificate of another key is refused and nothing is kept.
    let idp = key_pair(&dir, "idp");
    let other = key_pair(&dir, "other");
    let refused = tessera(&s, &["saml", "import-key", &idp.0, &other.1]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("not the key's"),
        "{err}"
    );
    let status = tessera(&s, &["--json", "saml", "status"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["signing"], Value::Null);
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);

    // The IdP metadata is signed with the IdP's key (xmlsec1 checks it) and valid a week.
    let published = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(published.contains("validUntil=\""), "{published}");
    assert!(xmlsec_verifies(
        &dir,
        &published,
        "metadata:EntityDescriptor",
        &idp.1
    ));
    assert!(!xmlsec_verifies(
        &dir,
        &published,
        "metadata:EntityDescriptor",
        &other.1
    ));
    // The SP is registered from the metadata pysaml2 makes of its configuration.
    let sp_keys = key_pair(&dir, "sp");
    let sp_meta = peer(&s, &dir, &sp_keys, &json!({"cmd": "metadata"}));
    let meta_file = dir.join("sp-metadata.xml");
    std::fs::write(&meta_file, sp_meta["metadata"].as_str().unwrap()).unwrap();
    let added = tessera_ok(
        &s,
        &[
            "--json",
            "saml",
            "sp",
            "add",
            "wiki",
            "--application",
            "wiki",
            "--metadata",
            meta_file.to_str().unwrap(),
            "--attribute",
            "mail=email",
            "--attribute",
            "uid=username",
        ],
    );
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(added["entity_id"], SP);
    assert_eq!(added["acs_urls"], json!([ACS]));
    assert_eq!(added["require_signed_requests"], true, "{added}");
    assert_eq!(added["name_id_format"], "persistent");
    // A third SP gets its assertions encrypted to the certificate of its metadata.
    let vault_meta = peer_as(&s, &dir, &sp_keys, VAULT, ACS, &json!({"cmd": "metadata"}));
    let vault_file = dir.join("vault-metadata.xml");
    std::fs::write(&vault_file, vault_meta["metadata"].as_str().unwrap()).unwrap();
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "vault",
            "--application",
            "wiki",
            "--metadata",
            vault_file.to_str().unwrap(),
            "--encrypt-assertions",
        ],
    );
    s.admin().engine().reload().await.unwrap();

    let seen = peer(
        &s,
        &dir,
        &sp_keys,
        &json!({
            "cmd": "sso", "username": "alice", "password": "alice-password",
            "totp_seed_b32": common::SEED_B32,
            "runs": [
                {"binding": "redirect", "sign": true},
                {"binding": "post", "sign": true},
                {"binding": "redirect", "sign": false},
                {"binding": "post", "sign": true, "acs": "http://127.0.0.1:9/elsewhere"},
                {"binding": "redirect", "sign": true, "entity": "http://127.0.0.1:9/unknown"},
                {"binding": "redirect", "sign": true, "entity": VAULT},
                {"binding": "redirect", "sign": true, "key": other.0},
                {"binding": "post", "sign": true, "key": other.0},
                {"binding": "redirect", "sign": true, "sha1": true},
                {"binding": "post", "sign": true, "sha1": true},
            ]
        }),
    );
    let runs = seen["runs"].as_array().unwrap();
    // HTTP-Redirect: the login page (password, then OTP), then the signed answer.
    let first = &runs[0];
    assert!(first.get("error").is_none(), "{first}");
    assert_eq!(first["acs"], ACS);
    assert_eq!(first["relay_state"], "relay-redirect");
    assert_eq!(first["in_response_to"], true);
    assert_eq!(first["issuer"], format!("{}/saml/metadata", s.url));
    assert_eq!(
        first["name_id_format"],
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    );
    assert!(first["pages"].as_u64().unwrap() >= 3, "{first}");
    assert_eq!(first["ava"]["uid"], json!(["alice"]));
    // Each assertion is audited.
    let given = s.audit("saml_sign_in").await;
    assert!(!given.is_empty(), "{given:?}");
    assert!(given.iter().all(|r| r.user.as_deref() == Some("alice")));
    // The SP is told when the SSO session ends (sso_session_minutes from the sign-in).
    let xml = first["xml"].as_str().unwrap();
    let end = xml
        .split("SessionNotOnOrAfter=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no SessionNotOnOrAfter in {xml}"));
    let end = time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp();
    let minutes = i64::from(s.admin().settings().sso_session_minutes);
    assert!(
        (end - (s.now() + minutes * 60)).abs() < 120,
        "{end} vs now {} + {minutes} min",
        s.now()
    );
    assert!(
        first["csp"].as_str().unwrap().contains("script-src 'self'"),
        "{first}"
    );
    // HTTP-POST, in the same browser: posted again from Tessera's own site (the request, its
    // relay state and the mark), the SSO session answers without a login page, with the same
    // pseudonym.
    let second = &runs[1];
    assert!(second.get("error").is_none(), "{second}");
    assert_eq!(
        second["posted_again"],
        json!(["RelayState", "SAMLRequest", "same_site"]),
        "{second}"
    );
    assert_eq!(second["pages"], 0, "{second}");
    assert_eq!(second["relay_state"], "relay-post");
    assert_eq!(second["name_id"], first["name_id"]);
    assert_ne!(first["name_id"], "alice");
    // An unsigned request where signing is required, an unregistered ACS: SAML error statuses,
    // posted to the registered ACS.
    for (run, why) in [(&runs[2], "must be signed"), (&runs[3], "not registered")] {
        assert_eq!(run["error"], "StatusRequestDenied", "{run}");
        assert!(run["error_text"].as_str().unwrap().contains(why), "{run}");
        assert_eq!(run["acs"], ACS);
    }
    // An unknown SP: no address to answer to, a page.
    assert_eq!(runs[4]["request_status"], 400, "{}", runs[4]);
    assert!(
        runs[4]["page"]
            .as_str()
            .unwrap()
            .contains("not registered with Tessera as a SAML service provider")
    );

    // Requests signed with a key that is not the SP's, over both bindings: refused.
    for forged in &runs[6..8] {
        assert_eq!(forged["error"], "StatusRequestDenied", "{forged}");
        assert!(
            forged["error_text"]
                .as_str()
                .unwrap()
                .contains("does not verify with the SP's certificates"),
            "{forged}"
        );
    }
    // Requests signed with SHA-1 by the SP's own key: refused for SHA-1, not as forged.
    for sha1 in &runs[8..10] {
        assert_eq!(sha1["error"], "StatusRequestDenied", "{sha1}");
        assert!(
            sha1["error_text"]
                .as_str()
                .unwrap()
                .contains("SHA-1 is not allowed"),
            "{sha1}"
        );
    }
    // The encrypted assertion: nothing of it in clear, pysaml2 decrypts it and checks the
    // signatures of the response and of the assertion inside.
    let enc = &runs[5];
    assert!(enc.get("error").is_none(), "{enc}");
    assert_eq!(enc["pages"], 0, "{enc}");
    assert_eq!(enc["ava"]["uid"], json!(["alice"]), "{enc}");
    let enc_xml = enc["xml"].as_str().unwrap();
    assert!(enc_xml.contains("<saml:EncryptedAssertion"), "{enc_xml}");
    assert!(!enc_xml.contains("alice") && !enc_xml.contains("<saml:Assertion"));
    assert!(xmlsec_verifies(&dir, enc_xml, "protocol:Response", &idp.1));

    // xmlsec1 itself checks both signatures with the IdP's certificate, and fails a tampered
    // response.
    let xml = first["xml"].as_str().unwrap();
    assert!(xmlsec_verifies(&dir, xml, "protocol:Response", &idp.1));
    assert!(xmlsec_verifies(&dir, xml, "assertion:Assertion", &idp.1));
    assert!(!xmlsec_verifies(&dir, xml, "protocol:Response", &other.1));
    let tampered = xml.replacen(">alice<", ">mallory<", 1);
    assert_ne!(tampered, xml);
    assert!(!xmlsec_verifies(
        &dir,
        &tampered,
        "protocol:Response",
        &idp.1
    ));
    assert!(!xmlsec_verifies(
        &dir,
        &tampered,
        "assertion:Assertion",
        &idp.1
    ));

    // Rotation: the next certificate is published beside the current one, then signs.
    let next = key_pair(&dir, "next");
    tessera_ok(&s, &["saml", "import-key", &next.0, &next.1, "--next"]);
    let published = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        published
            .matches("<md:KeyDescriptor use=\"signing\">")
            .count(),
        2
    );
    tessera_ok(&s, &["--json", "saml", "rotate"]);
    let again = tessera(&s, &["saml", "rotate"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("there is no next key"),
        "{again:?}"
    );
    let seen = peer(
        &s,
        &dir,
        &sp_keys,
        &json!({"cmd": "sso", "username": "alice", "password": "alice-password",
                "totp_seed_b32": common::SEED_B32,
                "runs": [{"binding": "redirect", "sign": false}]}),
    );
    let refused = &seen["runs"][0];
    assert_eq!(refused["error"], "StatusRequestDenied", "{refused}");
    let xml = refused["xml"].as_str().unwrap();
    assert!(xmlsec_verifies(&dir, xml, "protocol:Response", &next.1));
    assert!(!xmlsec_verifies(&dir, xml, "protocol:Response", &idp.1));
    s.stop().await;
}

/// Registers an SP from the metadata pysaml2 makes for it.
fn register(
    s: &TestServer,
    dir: &Path,
    keys: &(String, String),
    name: &str,
    entity: &str,
    acs: &str,
) {
    let meta = peer_as(s, dir, keys, entity, acs, &json!({"cmd": "metadata"}));
    let file = dir.join(format!("{name}-metadata.xml"));
    std::fs::write(&file, meta["metadata"].as_str().unwrap()).unwrap();
    tessera_ok(
        s,
        &[
            "saml",
            "sp",
            "add",
            name,
            "--application",
            "wiki",
            "--metadata",
            file.to_str().unwrap(),
        ],
    );
}

async fn pysaml2_single_logout_reaches_every_sp_of_the_session(b: Backend) {
    let s = TestServer::start(b, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0051", None).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll("bob", TokenKind::Totp, "TOTP0052", None).await;
    s.use_app("wiki", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let idp = key_pair(&dir, "idp");
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);
    let keys = key_pair(&dir, "sp");
    let second = "http://127.0.0.1:9/sp2";
    register(&s, &dir, &keys, "wiki", SP, ACS);
    register(&s, &dir, &keys, "crm", second, "http://127.0.0.1:9/acs2");
    s.admin().engine().reload().await.unwrap();

    let seen = peer(
        &s,
        &dir,
        &keys,
        &json!({"cmd": "slo", "entity2": second, "username": "alice",
                "password": "alice-password", "totp_seed_b32": common::SEED_B32,
                "second_user": {"username": "bob", "password": "bob-password",
                                "totp_seed_b32": common::SEED_B32}}),
    );
    assert_eq!(seen["signed_in"], true, "{seen}");
    assert!(seen["a_pages"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["b_pages"], 0, "{seen}");
    // Tessera told the second SP (a signed request it checked, naming its user), then answered
    // the first with success.
    assert_eq!(seen["b_told"], true, "{seen}");
    assert_eq!(seen["a_answered"], true, "{seen}");
    assert_eq!(
        seen["hops"],
        json!([format!("{second}/slo"), format!("{SP}/slo")]),
        "{seen}"
    );
    // The SSO session is gone: the next sign-in shows the login page.
    assert_eq!(seen["after_signed_in"], false, "{seen}");
    assert!(seen["after_pages"].as_u64().unwrap() >= 1, "{seen}");
    // Signing out on Tessera's own page tells both SPs, then says so.
    assert_eq!(seen["second_signed_in"], true, "{seen}");
    assert_eq!(
        seen["logout_page_told"],
        json!([[format!("{SP}/slo"), true], [format!("{second}/slo"), true]]),
        "{seen}"
    );
    assert_eq!(seen["logout_page_final"], true, "{seen}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_in_to_a_saml_app_on_the_login_page() {
    let app = common::Provider::start().await;
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll("alice", TokenKind::Totp, "TOTP0053", None).await;
    s.use_app("portal", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let idp = key_pair(&dir, "idp");
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);
    // Registered by hand: entity ID and ACS URL, the login name as NameID, groups as an
    // attribute.
    let acs = format!("{}/acs", app.url);
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "portal",
            "--application",
            "portal",
            "--entity-id",
            "urn:example:portal",
            "--acs-url",
            &acs,
            "--attribute",
            "login=username",
            "--idp-initiated",
        ],
    );
    // The portal's own look — logo, colour, texts — set with the CLI.
    let pixel = dir.join("logo.png");
    std::fs::write(
        &pixel,
        data_encoding::BASE64.decode(PIXEL.as_bytes()).unwrap(),
    )
    .unwrap();
    tessera_ok(
        &s,
        &[
            "app",
            "brand",
            "portal",
            "--logo",
            pixel.to_str().unwrap(),
            "--primary-color",
            "#0a7d32",
            "--text",
            "en.title=Contoso portal",
            "--text",
            "en.intro=Use your Contoso account.",
            "--text",
            "en.help=Help: call 1234",
            "--text",
            "tr.title=Contoso portalı",
            "--text",
            "tr.continue=İlerle",
        ],
    );
    // A colour that would write more CSS, or a logo that is no image, is refused and the
    // branding stays; `app set` keeps it too.
    for (bad, why) in [
        (
            ["--primary-color", "red} body {display:none"],
            "not #rrggbb",
        ),
        (["--logo", "Cargo.toml"], "not a PNG, JPEG or SVG"),
    ] {
        let mut args = vec!["app", "brand", "portal"];
        args.extend(bad);
        let refused = tessera(&s, &args);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(why), "{err}");
    }
    let set = tessera_ok(
        &s,
        &[
            "--json", "app", "set", "portal", "--factor", "password", "--factor", "soft_otp",
        ],
    );
    let set: Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(set["branding"]["primary_color"], "#0a7d32", "{set}");
    s.admin().engine().reload().await.unwrap();
    let css = reqwest::get(format!("{}/login/brand/portal/style.css", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("#0a7d32") && !css.contains("display"), "{css}");
    let logo = reqwest::get(format!("{}/login/brand/portal/logo", s.url))
        .await
        .unwrap();
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert!(
        logo.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    // In Turkish, the Turkish texts (and the page's own for what the branding leaves).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = http
        .get(format!("{}/saml/init?sp=portal", s.url))
        .header("accept-language", "tr-TR")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303);
    let flow = started.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{}/login", s.url))
        .header("cookie", flow)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>Contoso portalı</h1>"), "{page}");
    assert!(page.contains(">İlerle</button>") && page.contains("Kullanıcı adı"));
    assert!(!page.contains("Use your Contoso account."));
    // Then the app itself asks, from a page of another site that posts an AuthnRequest (the
    // HTTP-POST binding): Chromium sends no SameSite=Lax cookie with that POST, yet the SSO
    // session answers without a sign-in page.
    let request = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_req-chromium-1\" Version=\"2.0\" IssueInstant=\"{}\" AssertionConsumerServiceURL=\"{acs}\"><saml:Issuer>urn:example:portal</saml:Issuer></samlp:AuthnRequest>",
        chrono_now()
    );
    let cross_site_post = format!(
        "data:text/html,<form method=post action='{}/saml/sso'><input type=hidden name=SAMLRequest value='{}'></form><script>document.forms[0].submit()</script>",
        s.url,
        data_encoding::BASE64.encode(request.as_bytes())
    );
    // IdP-initiated (a portal link); screenshots of every page for review:
    // target/tmp/screenshots/saml-login/.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/saml-login");
    let _ = std::fs::remove_dir_all(&shots);
    let seen = common::python_peer(
        "browser",
        "browser_peer.py",
        &[
            format!("{}/saml/init?sp=portal&RelayState=rs-7", s.url),
            shots.display().to_string(),
        ],
        &json!({"username": "alice", "password": "alice-password",
                "totp_seed_b32": common::SEED_B32, "redirect_prefix": acs,
                "then": [{"url": cross_site_post, "expect_prefix": acs}]}),
    );
    let out = &seen[0];
    let pages = out["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2, "{out}");
    assert_eq!(out["later"], json!([acs]), "{out}");
    let posted = app.requests("/acs");
    assert_eq!(posted.len(), 2, "{out}");
    let second: std::collections::HashMap<String, String> =
        form_urlencoded::parse(posted[1].body.as_bytes())
            .into_owned()
            .collect();
    let answer = String::from_utf8(
        data_encoding::BASE64
            .decode(second["SAMLResponse"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert!(
        answer.contains("InResponseTo=\"_req-chromium-1\""),
        "{answer}"
    );
    assert!(answer.contains("status:Success"), "{answer}");
    assert_eq!(pages[0]["heading"], "Contoso portal");
    assert_eq!(pages[0]["intro"], "Use your Contoso account.");
    // The brand's stylesheet and logo loaded under the page's CSP.
    assert_eq!(
        pages[0]["button_background"], "rgba(10, 125, 50, 1)",
        "{out}"
    );
    assert_eq!(pages[0]["logo_width"], 1, "{out}");
    assert_eq!(
        pages[1]["prompt"],
        "Please enter the OTP from your authenticator"
    );
    assert!(shots.join("03-back-at-the-app.png").exists());
    // The browser posted the response to the ACS by itself: the page's script ran under its
    // CSP.
    assert_eq!(out["final_url"], acs);
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(posted[0].body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(form["RelayState"], "rs-7");
    let xml = String::from_utf8(
        data_encoding::BASE64
            .decode(form["SAMLResponse"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert!(xml.contains("urn:example:portal") && !xml.contains("InResponseTo"));
    assert!(xml.contains(">alice</saml:NameID>"), "{xml}");
    assert!(xmlsec_verifies(&dir, &xml, "protocol:Response", &idp.1));
    assert!(xmlsec_verifies(&dir, &xml, "assertion:Assertion", &idp.1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_imports_sp_metadata_and_refuses_bad_metadata() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.use_app("wiki", &[&[Method::Password]]).await;
    let token = s
        .admin_token("root", tessera_core::model::AdminRole::Admin)
        .await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = key_pair(&dir, "sp");
    let meta = peer(&s, &dir, &keys, &json!({"cmd": "metadata"}));
    let import = |name: &str, body: String| {
        s.http
            .post(format!(
                "{}/api/v1/saml-sps/import?name={name}&application=wiki",
                s.url
            ))
            .bearer_auth(&token)
            .body(body)
            .send()
    };
    for (bad, why) in [
        ("<not xml", "not well-formed"),
        (
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"x\"/>",
            "SPSSODescriptor",
        ),
    ] {
        let res = import("wiki", bad.into()).await.unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    let res = import("wiki", meta["metadata"].as_str().unwrap().into())
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["entity_id"], SP);
    assert_eq!(created["slo_url"], format!("{SP}/slo"));
    assert_eq!(created["certificates"].as_array().unwrap().len(), 1);
    // The metadata's own ACS index is kept (requests name it).
    let index = created["acs_indexes"][0].as_u64().unwrap();
    assert!(
        meta["metadata"]
            .as_str()
            .unwrap()
            .contains(&format!("index=\"{index}\""))
    );
    let again = import("wiki", meta["metadata"].as_str().unwrap().into())
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let api = common::Api {
        s: &s,
        token: token.clone(),
    };
    let (status, list) = api.get("/saml-sps").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["saml_sps"].as_array().unwrap().len(), 1, "{list}");
    // An SP for an application that does not exist is refused, with nothing stored.
    let res = s
        .http
        .post(format!(
            "{}/api/v1/saml-sps/import?name=other&application=nope",
            s.url
        ))
        .bearer_auth(&token)
        .body(meta["metadata"].as_str().unwrap().replace(SP, "urn:other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let listed = s.admin().list::<tessera_core::model::SamlServiceProvider>();
    assert_eq!(listed.len(), 1);
    // A POST-binding request is posted again from Tessera's own page only when it is an
    // authentication request of a registered SP; nothing is stored either way.
    let request = |issuer: &str| {
        data_encoding::BASE64.encode(
            format!(
                "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_r1\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>{issuer}</saml:Issuer></samlp:AuthnRequest>"
            )
            .as_bytes(),
        )
    };
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let before = s
        .store()
        .web_states_of(WebStateKind::SamlRequestSeen, "", s.now());
    let before = before.await.unwrap().len();
    for (body, status) in [
        (data_encoding::BASE64.encode(b"not xml"), 400),
        (request("urn:nobody"), 400),
        (request(SP), 200),
    ] {
        let res = browser
            .post(format!("{}/saml/sso", s.url))
            .form(&[("SAMLRequest", body.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        let page = res.text().await.unwrap();
        if status == 200 {
            assert!(
                common::unescape(&page).contains("action=\"/saml/sso\""),
                "{page}"
            );
            assert_eq!(common::hidden_input(&page, "SAMLRequest"), body);
            assert_eq!(common::hidden_input(&page, "same_site"), "1");
        }
    }
    let after = s
        .store()
        .web_states_of(WebStateKind::SamlRequestSeen, "", s.now());
    assert_eq!(after.await.unwrap().len(), before, "nothing remembered");
    // The exported configuration carries it as a [[saml_sp]] and applies back unchanged.
    let (status, exported) = api.get("/config").await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(exported["saml_sp"][0]["entity_id"], SP, "{exported}");
    let (status, applied) = api.post("/config?prune=true", exported.clone()).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["changes"], json!([]), "{applied}");
    // A [[saml_sp]] with a problem is refused with the reason, nothing applied.
    let mut bad = exported.clone();
    bad["saml_sp"][0]["acs_urls"] = json!(["http://evil.example/acs"]);
    let (status, body) = api.post("/config", bad).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("must be https://"), "{body}");
    assert_eq!(
        s.admin()
            .get::<tessera_core::model::SamlServiceProvider>("wiki")
            .unwrap()
            .acs_urls,
        vec![ACS.to_string()]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_read_from_an_address_is_read_again() {
    use std::sync::{Arc, Mutex};
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.set(json!({"public_url": s.url})).await;
    s.use_app("wiki", &[&[Method::Password]]).await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = key_pair(&dir, "sp");
    let meta = peer(&s, &dir, &keys, &json!({"cmd": "metadata"}))["metadata"]
        .as_str()
        .unwrap()
        .to_string();
    // The SP's own web server, whose metadata changes.
    let served = Arc::new(Mutex::new(meta.clone()));
    let body = served.clone();
    // How often the metadata was read.
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metadata", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metadata",
            axum::routing::get(move || {
                let body = body.clone();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { body.lock().unwrap().clone() }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "wiki",
            "--application",
            "wiki",
            "--metadata-url",
            &url,
            "--attribute",
            "mail=email",
        ],
    );
    // What the metadata gives is not also given by hand (it would be overwritten).
    let both = tessera(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "other",
            "--application",
            "wiki",
            "--metadata-url",
            &url,
            "--acs-url",
            ACS,
        ],
    );
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(
        !both.status.success() && err.contains("drop --entity-id"),
        "{err}"
    );
    let set = tessera(&s, &["saml", "sp", "set", "wiki", "--acs-url", ACS]);
    let err = String::from_utf8_lossy(&set.stderr);
    assert!(
        !set.status.success() && err.contains("read from its metadata address"),
        "{err}"
    );
    s.admin().engine().reload().await.unwrap();
    let current = || {
        s.admin()
            .get::<tessera_core::model::SamlServiceProvider>("wiki")
            .unwrap()
    };
    assert_eq!(current().acs_urls, vec![ACS.to_string()]);
    // (The server counts from when it first saw the SP.)
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // The SP moves its ACS; a day later Tessera has read it, and kept the attribute mapping.
    *served.lock().unwrap() = meta.replace(ACS, "http://127.0.0.1:9/acs-new");
    s.advance(1441 * 60);
    let mut moved = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        s.admin().engine().refresh().await.unwrap();
        if current().acs_urls == vec!["http://127.0.0.1:9/acs-new".to_string()] {
            moved = true;
            break;
        }
    }
    assert!(moved, "{:?}", current());
    assert_eq!(current().attributes.len(), 1);
    // Metadata that now names another entity is not taken.
    *served.lock().unwrap() = meta
        .replace(SP, "http://127.0.0.1:9/impostor")
        .replace(ACS, "http://127.0.0.1:9/acs-evil");
    let before = reads.load(std::sync::atomic::Ordering::SeqCst);
    s.advance(1441 * 60);
    for _ in 0..60 {
        if reads.load(std::sync::atomic::Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        reads.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the metadata was read again"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    s.admin().engine().refresh().await.unwrap();
    assert_eq!(current().entity_id, SP);
    assert_eq!(
        current().acs_urls,
        vec!["http://127.0.0.1:9/acs-new".to_string()]
    );
    // A restart does not start the count again: a server started on the same data a day after
    // the last reading reads the metadata at once.
    *served.lock().unwrap() = meta.replace(ACS, "http://127.0.0.1:9/acs-restarted");
    let mut s = s;
    s.halt().await;
    let config = s.config.clone();
    let again =
        TestServer::start_configured(Backend::Sqlite, Some(s.now() + 1441 * 60), |c| *c = config)
            .await;
    let mut moved = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        again.admin().engine().refresh().await.unwrap();
        let sp = again
            .admin()
            .get::<tessera_core::model::SamlServiceProvider>("wiki")
            .unwrap();
        if sp.acs_urls == vec!["http://127.0.0.1:9/acs-restarted".to_string()] {
            moved = true;
            break;
        }
    }
    assert!(moved, "the metadata was not read after the restart");
    again.stop().await;
    s.stop().await;
}

/// Signs in through an IdP-initiated link with a password-only application, in a browser
/// played by reqwest (cookies carried by hand); returns the response XML posted to the ACS.
async fn idp_initiated_xml(s: &TestServer, sp: &str, cookies: &mut Vec<String>) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut res = http
        .get(format!("{}/saml/init?sp={sp}", s.url))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    let keep = |res: &reqwest::Response, cookies: &mut Vec<String>| {
        for c in res.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_string();
            let name = pair.split('=').next().unwrap().to_string();
            cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            cookies.push(pair);
        }
    };
    keep(&res, cookies);
    if res.status() == 303 {
        let page = http
            .get(format!("{}/login", s.url))
            .header("cookie", cookies.join("; "))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = common::hidden_input(&page, "csrf");
        res = http
            .post(format!("{}/login", s.url))
            .header("cookie", cookies.join("; "))
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", "alice"),
                ("answer", "alice-password"),
            ])
            .send()
            .await
            .unwrap();
        keep(&res, cookies);
    }
    let page = res.text().await.unwrap();
    let b64 = common::hidden_input(&page, "SAMLResponse");
    String::from_utf8(data_encoding::BASE64.decode(b64.as_bytes()).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_transient_name_ids_and_group_attributes() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("wiki", &[&[Method::Password]]).await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let idp = key_pair(&dir, "idp");
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);
    for (name, format) in [("mailer", "email"), ("kiosk", "transient")] {
        tessera_ok(
            &s,
            &[
                "saml",
                "sp",
                "add",
                name,
                "--application",
                "wiki",
                "--entity-id",
                &format!("urn:example:{name}"),
                "--acs-url",
                ACS,
                "--name-id-format",
                format,
                "--attribute",
                "memberOf=groups",
                "--attribute",
                "cn=display_name",
                "--idp-initiated",
            ],
        );
    }
    // An SP that did not ask for it takes no sign-in started at Tessera.
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "closed",
            "--application",
            "wiki",
            "--entity-id",
            "urn:example:closed",
            "--acs-url",
            ACS,
        ],
    );
    s.admin().engine().reload().await.unwrap();
    let page = reqwest::get(format!("{}/saml/init?sp=closed", s.url))
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("from the application itself")
    );
    let mut cookies = Vec::new();
    let mail = idp_initiated_xml(&s, "mailer", &mut cookies).await;
    assert!(
        mail.contains("Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">alice@example.org</saml:NameID>"),
        "{mail}"
    );
    assert!(mail.contains(">staff</saml:AttributeValue>"), "{mail}");
    assert!(mail.contains(">Given Sur</saml:AttributeValue>"), "{mail}");
    assert!(xmlsec_verifies(&dir, &mail, "assertion:Assertion", &idp.1));
    // Changed with `saml sp set`: the login name, only the response signed; a wrong value
    // changes nothing.
    let refused = tessera(&s, &["saml", "sp", "set", "mailer", "--sign", "everything"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("assertion, response or both"));
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "set",
            "mailer",
            "--sign",
            "response",
            "--name-id-format",
            "unspecified",
        ],
    );
    s.admin().engine().reload().await.unwrap();
    let plain = idp_initiated_xml(&s, "mailer", &mut cookies).await;
    assert!(
        plain.contains("nameid-format:unspecified\">alice</saml:NameID>"),
        "{plain}"
    );
    assert!(xmlsec_verifies(&dir, &plain, "protocol:Response", &idp.1));
    assert!(
        !plain.contains("<saml:Assertion")
            || !xmlsec_verifies(&dir, &plain, "assertion:Assertion", &idp.1)
    );
    assert_eq!(plain.matches("<ds:SignatureValue>").count(), 1);
    // Transient: a new value at each sign-in (the second through the SSO session).
    let name_id = |xml: &str| {
        xml.split("nameid-format:transient\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_string()
    };
    let one = idp_initiated_xml(&s, "kiosk", &mut cookies).await;
    let two = idp_initiated_xml(&s, "kiosk", &mut cookies).await;
    assert_ne!(name_id(&one), name_id(&two));
    assert!(!name_id(&one).contains("alice"));
    // A RelayState longer than Tessera keeps is refused with a page, not dropped.
    let long = "r".repeat(1025);
    let r = s
        .http
        .get(format!("{}/saml/init?sp=kiosk&RelayState={long}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("The application&#x27;s sign-in request could not be read."),
        "{page}"
    );
    let fits = "r".repeat(1024);
    let r = s
        .http
        .get(format!("{}/saml/init?sp=kiosk&RelayState={fits}", s.url))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 400, "1024 bytes are kept");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_pages_are_rate_limited_per_address() {
    // A fake clock: the minute does not turn during the test.
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_000)).await;
    s.set(json!({"public_url": s.url, "web_requests_per_minute": 5}))
        .await;
    let get = |path: &str| reqwest::get(format!("{}{path}", s.url));
    for _ in 0..5 {
        assert_eq!(get("/saml/init?sp=nope").await.unwrap().status(), 400);
    }
    let limited = get("/oidc/authorize").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
    assert!(limited.text().await.unwrap().contains("Too many requests"));
    // Stylesheets are not counted; the validate API is another door.
    assert_eq!(get("/login/style.css").await.unwrap().status(), 200);
    assert_ne!(get("/healthz").await.unwrap().status(), 429);
    // The next minute, the pages answer again; with the limit off, always.
    s.advance(60);
    assert_eq!(get("/saml/init?sp=nope").await.unwrap().status(), 400);
    for _ in 0..5 {
        get("/saml/init?sp=nope").await.unwrap();
    }
    s.set(json!({"web_requests_per_minute": 0})).await;
    assert_eq!(get("/saml/init?sp=nope").await.unwrap().status(), 400);
    s.stop().await;
}

/// The NameID from a directory attribute, as Microsoft 365 (Entra ID) federation needs it: a
/// persistent NameID whose value is the ImmutableID — AD's objectGUID in base64. OpenLDAP has
/// no objectGUID: the fixture's binary jpegPhoto takes its part (read as bytes, sent in base64).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_id_comes_from_a_directory_attribute_as_microsoft_365_needs() {
    use tessera_testkit::slapd::{BASE_DN, SVC_DN, SVC_PASSWORD, Slapd};
    let d = Slapd::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    let source: tessera_core::model::UserSourceDef = serde_json::from_value(json!({
        "name": "corp", "type": "ldap",
        "ldap": {"directory": "openldap", "servers": [d.ldap_url], "base_dn": BASE_DN,
                 "bind_dn": SVC_DN, "bind_password": SVC_PASSWORD, "timeout_seconds": 2,
                 "attributes": {"extra": ["jpegPhoto", "departmentNumber", "employeeType"]}}
    }))
    .unwrap();
    s.admin().put(&common::actor(), source).await.unwrap();
    s.admin()
        .put(
            &common::actor(),
            tessera_core::model::Realm {
                name: "default".into(),
                sources: vec!["corp".into()],
                description: String::new(),
            },
        )
        .await
        .unwrap();
    s.use_app("office", &[&[Method::Password]]).await;
    let dir: PathBuf = s.config.data_dir.join("saml");
    std::fs::create_dir_all(&dir).unwrap();
    let idp = key_pair(&dir, "idp");
    tessera_ok(&s, &["saml", "import-key", &idp.0, &idp.1]);
    let add = |from: &str| {
        tessera(
            &s,
            &[
                "saml",
                "sp",
                "add",
                "m365",
                "--application",
                "office",
                "--entity-id",
                "urn:federation:MicrosoftOnline",
                "--acs-url",
                ACS,
                "--name-id-format",
                "persistent",
                "--name-id-from",
                from,
                "--attribute",
                "IDPEmail=email",
                "--idp-initiated",
            ],
        )
    };
    // Groups have many values, a NameID one: refused, nothing registered.
    let refused = add("groups");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("name_id_from: 'groups' is not one of"),
        "{refused:?}"
    );
    assert!(
        s.admin()
            .list::<tessera_core::model::SamlServiceProvider>()
            .is_empty()
    );
    assert!(add("attribute:jpegPhoto").status.success());
    s.admin().engine().reload().await.unwrap();
    let shown = tessera_ok(&s, &["saml", "sp", "show", "m365"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("attribute:jpegPhoto"));

    let mut cookies = Vec::new();
    let xml = idp_initiated_xml(&s, "m365", &mut cookies).await;
    assert!(
        xml.contains(
            "Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">/9j/4AAQ</saml:NameID>"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("Name=\"IDPEmail\"")
            && xml.contains(">alice@example.org</saml:AttributeValue>"),
        "{xml}"
    );
    assert!(xmlsec_verifies(&dir, &xml, "assertion:Assertion", &idp.1));
    // Another attribute (text), then one the user does not have: a SAML error, no assertion.
    async fn with(s: &TestServer, cookies: &mut Vec<String>, from: &str) -> String {
        tessera_ok(s, &["saml", "sp", "set", "m365", "--name-id-from", from]);
        s.admin().engine().reload().await.unwrap();
        idp_initiated_xml(s, "m365", cookies).await
    }
    let xml = with(&s, &mut cookies, "attribute:departmentNumber").await;
    assert!(
        xml.contains("persistent\">Engineering</saml:NameID>"),
        "{xml}"
    );
    let xml = with(&s, &mut cookies, "attribute:employeeNumber").await;
    assert!(xml.contains("InvalidNameIDPolicy"), "{xml}");
    assert!(
        xml.contains("the user has no single attribute:employeeNumber"),
        "{xml}"
    );
    assert!(!xml.contains("<saml:Assertion"), "{xml}");
    // Two values: which would be the account? Refused the same way.
    let xml = with(&s, &mut cookies, "attribute:employeeType").await;
    assert!(xml.contains("InvalidNameIDPolicy"), "{xml}");
    assert!(!xml.contains("<saml:Assertion"), "{xml}");
    // Names and phone numbers are neither unique nor stable: refused, nothing changed.
    let refused = tessera(
        &s,
        &[
            "saml",
            "sp",
            "set",
            "m365",
            "--name-id-from",
            "display_name",
        ],
    );
    assert!(!refused.status.success(), "{refused:?}");
    s.admin().engine().reload().await.unwrap();
    assert_eq!(
        s.admin()
            .get::<tessera_core::model::SamlServiceProvider>("m365")
            .unwrap()
            .name_id_from
            .as_deref(),
        Some("attribute:employeeType")
    );
    // `none`: the pseudonym of the persistent format again.
    let xml = with(&s, &mut cookies, "none").await;
    let value = xml
        .split("persistent\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .unwrap();
    assert!(
        value.len() >= 20 && !value.contains("alice") && value != "/9j/4AAQ",
        "{xml}"
    );
    s.stop().await;
}
