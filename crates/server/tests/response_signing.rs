//! privacyIDEA's response signatures (issue 16, item 6): the answers of /validate/* and /auth
//! carry a `signature` that privacyIDEA 3.14's own `Sign` class verifies with the public key
//! `tessera response-signing` prints, the request's `nonce` echoed inside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, tessera, tessera_ok};
use serde_json::{Value, json};
use tessera_core::model::TokenKind;

/// An RSA key made by OpenSSL: `(path, PEM)`; `traditional`: PKCS#1, as older OpenSSL and
/// privacyIDEA's `pi-manage create_audit_keys` wrote it.
fn openssl_key(dir: &std::path::Path, name: &str, traditional: bool) -> (String, String) {
    let path = dir.join(name);
    let mut cmd = std::process::Command::new("openssl");
    cmd.arg("genrsa");
    if traditional {
        cmd.arg("-traditional");
    }
    let out = cmd.arg("-out").arg(&path).arg("2048").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    (path.display().to_string(), pem)
}

/// The public key OpenSSL derives from the private key file.
fn openssl_public(path: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in", path])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn signed(url: &str, steps: Value) -> Vec<Value> {
    common::python_peer(
        "pi",
        "pi_clients.py",
        &["signed".to_string(), url.to_string()],
        &steps,
    )
}

async fn signs_answers(backend: Backend) {
    let s = TestServer::start(backend, Some(1_800_000_010)).await;
    s.add_user("alice", Some("alice-password")).await;
    s.enroll("alice", TokenKind::Hotp, "OATHSIGN", Some("1234"))
        .await;

    // Off by default, and it cannot be turned on before a key is there.
    let refused = tessera(&s, &["settings", "set", "sign_responses=true"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("tessera response-signing import-key") && why.contains("nothing was changed"),
        "{why}"
    );
    assert!(!s.admin().settings().sign_responses);
    let plain: Value = s
        .http
        .post(format!("{}/validate/check", s.url))
        .form(&[("user", "alice"), ("pass", "nope"), ("nonce", "n-0")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(plain.get("signature").is_none() && plain.get("nonce").is_none());

    // A PKCS#1 key (privacyIDEA's own key file can be imported as it is): the public key
    // printed is the one OpenSSL derives.
    let (path, _) = openssl_key(s.dir.path(), "old.pem", true);
    let out = tessera_ok(&s, &["response-signing", "import-key", &path, "--json"]);
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["public_key"], openssl_public(&path));
    assert_eq!(imported["sign_responses"], false);
    // … replaced by a PKCS#8 one.
    let (path, _) = openssl_key(s.dir.path(), "key.pem", false);
    let out = tessera_ok(&s, &["response-signing", "import-key", &path]);
    let text = String::from_utf8_lossy(&out.stdout);
    let public = openssl_public(&path);
    assert!(
        text.contains(&public) && text.contains("tessera settings set sign_responses=true"),
        "{text}"
    );
    // Junk is refused and the key stays.
    let junk = s.dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let refused = tessera(
        &s,
        &["response-signing", "import-key", junk.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PRIVATE KEY"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let shown = tessera_ok(&s, &["response-signing", "show", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["public_key"], public);

    tessera_ok(&s, &["settings", "set", "sign_responses=true"]);
    // The change reaches the running server through the store.
    let started = std::time::Instant::now();
    loop {
        let answer: Value = s
            .http
            .post(format!("{}/validate/check", s.url))
            .form(&[("user", "nobody"), ("pass", "x")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer.get("signature").is_some() {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "the setting did not take effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let step = |method: &str, path: &str, params: Value| json!({"method": method, "path": path, "params": params, "public_key": public});
    let out = signed(
        &s.url,
        json!([
            step(
                "POST",
                "/validate/check",
                json!({"user": "alice", "pass": format!("1234{}", s.hotp(0)), "nonce": "a1b2c3"})
            ),
            step(
                "POST",
                "/validate/check",
                json!({"user": "alice", "pass": format!("1234{}", s.hotp(0))})
            ),
            step(
                "GET",
                "/validate/check",
                json!({"user": "alice", "nonce": "ü&x"})
            ),
            step(
                "POST",
                "/validate/triggerchallenge",
                json!({"user": "alice", "nonce": "t"})
            ),
            step(
                "POST",
                "/auth",
                json!({"username": "admin", "password": "wrong", "nonce": "auth-1"})
            ),
            step(
                "GET",
                "/validate/polltransaction",
                json!({"transaction_id": "12345678901234567890"})
            ),
        ]),
    );
    for (i, answer) in out.iter().enumerate() {
        assert_eq!(answer["verified"], true, "step {i}: {answer}");
        assert_eq!(answer["tampered_verified"], false, "step {i}: {answer}");
        assert_eq!(answer["python_text"], true, "step {i}: {answer}");
        assert!(
            answer["body"]["signature"]
                .as_str()
                .unwrap()
                .starts_with("rsa_sha256_pss:")
        );
    }
    assert_eq!(out[0]["body"]["result"]["authentication"], "ACCEPT");
    assert_eq!(out[0]["body"]["nonce"], "a1b2c3");
    // A replayed code: rejected, signed, no nonce asked, none sent.
    assert_eq!(out[1]["body"]["result"]["authentication"], "REJECT");
    assert!(out[1]["body"].get("nonce").is_none());
    // Errors are signed too: a missing `pass` (905), a failed /auth.
    assert_eq!(out[2]["status"], 400);
    assert_eq!(out[2]["body"]["result"]["error"]["code"], 905);
    assert_eq!(out[2]["body"]["nonce"], "ü&x");
    assert_eq!(out[4]["status"], 401);
    assert_eq!(out[4]["body"]["nonce"], "auth-1");

    // The key cannot be removed while answers are signed with it.
    let refused = tessera(&s, &["response-signing", "remove-key"]);
    assert!(!refused.status.success());
    tessera_ok(&s, &["settings", "set", "sign_responses=false"]);
    tessera_ok(&s, &["response-signing", "remove-key"]);
    assert!(!tessera(&s, &["response-signing", "show"]).status.success());
    s.stop().await;
}

both_backends!(signs_answers);
