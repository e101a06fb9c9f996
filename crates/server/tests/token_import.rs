//! Token import (issue 16, item 4): RFC 6030's example files and a PSKC file written by
//! privacyIDEA 3.14 itself (its `export_pskc`, after codes were used there), privacyIDEA's OATH
//! CSV (checked against privacyIDEA's own `parseOATHcsv`), `tessera token import` and
//! `POST /api/v1/tokens/import`, then `tessera token assign`, and codes checked at
//! /validate/check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, tessera, tessera_ok};
use serde_json::{Value, json};
use tessera_core::model::AdminRole;
use tessera_testkit::{oathtool_hotp, oathtool_totp};

const KEY20: &str = "3132333435363738393031323334353637383930";
const KEY32: &str = "3132333435363738393031323334353637383930313233343536373839303132";
const RFC_PSK: &str = "12345678901234567890123456789012";

fn fixture(name: &str) -> String {
    common::root()
        .join("tests/fixtures/pskc")
        .join(name)
        .display()
        .to_string()
}

fn b32(hex: &str) -> String {
    data_encoding::BASE32_NOPAD.encode(&data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap())
}

/// `tessera token import` with `--json`: (exit status 0, the report or error text).
fn import(s: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, Value, String) {
    let mut all = vec!["token", "import", "--json"];
    all.extend_from_slice(args);
    common::json_outcome(match stdin {
        Some(text) => common::tessera_stdin(s, &all, text),
        None => tessera(s, &all),
    })
}

fn token(s: &TestServer, serial: &str) -> Option<Value> {
    let out = tessera(s, &["token", "show", serial, "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

async fn imports_rfc6030_files(backend: Backend) {
    let s = TestServer::start(backend, None).await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;

    // Encrypted without the key: the whole file is refused, nothing stored.
    let (ok, _, err) = import(&s, &[&fixture("rfc6030-figure6.xml")], None);
    assert!(!ok);
    assert!(err.contains("--psk-hex"), "{err}");
    assert!(token(&s, "987654321").is_none());
    // With a wrong key: every entry refused.
    let (ok, report, _) = import(
        &s,
        &[
            &fixture("rfc6030-figure6.xml"),
            "--psk-hex",
            "000102030405060708090a0b0c0d0e0f",
        ],
        None,
    );
    assert!(!ok);
    assert!(token(&s, "987654321").is_none(), "{report}");

    // Figure 7: the password, from standard input.
    let (ok, report, err) = import(
        &s,
        &[&fixture("rfc6030-figure7.xml"), "--password-stdin"],
        Some("qwerty\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(report["imported"], 1);
    assert_eq!(report["entries"][0]["serial"], "987654321");
    let t = token(&s, "987654321").unwrap();
    assert_eq!(
        (t["type"].as_str(), t["digits"].as_u64()),
        (Some("hotp"), Some(8))
    );
    assert_eq!(t["user"], "");
    tessera_ok(&s, &["token", "delete", "987654321"]);

    // Figure 6: the pre-shared key; then the token goes to alice with a PIN.
    let (ok, report, err) = import(
        &s,
        &[&fixture("rfc6030-figure6.xml"), "--psk-hex", RFC_PSK],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(report["entries"][0]["result"], "imported");
    // Not yet anyone's: no one signs in with it.
    let code0 = oathtool_hotp(&b32(KEY20), 0, 8);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &code0)]).await.0,
        "REJECT"
    );
    // A bad PIN is refused before anything changes.
    let refused = tessera(
        &s,
        &[
            "token",
            "assign",
            "987654321",
            "--user",
            "alice",
            "--pin",
            "",
        ],
    );
    assert!(!refused.status.success());
    assert_eq!(token(&s, "987654321").unwrap()["user"], "");
    tessera_ok(
        &s,
        &[
            "token",
            "assign",
            "987654321",
            "--user",
            "alice",
            "--pin",
            "4321",
        ],
    );
    let again = tessera(&s, &["token", "assign", "987654321", "--user", "bob"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("assigned to 'alice' already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("4321{code0}"))])
            .await
            .0,
        "ACCEPT"
    );

    // The same file again: refused entry by entry, the token untouched.
    let (ok, report, _) = import(
        &s,
        &[&fixture("rfc6030-figure6.xml"), "--psk-hex", RFC_PSK],
        None,
    );
    assert!(!ok);
    assert_eq!(report["refused"], 1);
    assert!(
        report["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("exists already")
    );
    assert_eq!(token(&s, "987654321").unwrap()["user"], "alice");

    // Figure 10: four keys, one serial twice; figure 2: a 4-byte seed is refused.
    let (ok, report, _) = import(&s, &[&fixture("rfc6030-figure10.xml")], None);
    assert!(!ok);
    assert_eq!(report["imported"], 3, "{report}");
    let dup = &report["entries"][3];
    assert_eq!(dup["serial"], "9999999");
    assert!(
        dup["reason"]
            .as_str()
            .unwrap()
            .contains("appears earlier in the file (line"),
        "{dup}"
    );
    let (ok, report, _) = import(&s, &[&fixture("rfc6030-figure2.xml")], None);
    assert!(!ok);
    assert!(
        report["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the seed is 4 bytes")
    );
    assert!(token(&s, "12345678").is_none());
    // Each import is audited.
    assert!(s.audit("token_import").await.len() >= 5);
    s.stop().await;
}

async fn imports_what_privacyidea_wrote(backend: Backend) {
    let s = TestServer::start(backend, None).await;
    s.add_user("bob", Some("bob-password")).await;
    s.add_user("carol", Some("carol-password")).await;
    let work = s.dir.path().join("privacyidea");
    let file = s.dir.path().join("export.pskc");
    let now = s.now();
    let totp_now = oathtool_totp(&b32(KEY32), now, 8, 60, "SHA256");
    // privacyIDEA enrols two tokens, accepts HOTP codes 0 and 1 and the current TOTP code, and
    // exports both.
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[work.display().to_string()],
        &json!([
            {"call": "init_token", "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIHOTP1",
                                              "description": "hardware token 1"}},
            {"call": "check", "serial": "PIHOTP1", "pass": oathtool_hotp(&b32(KEY20), 0, 6)},
            {"call": "check", "serial": "PIHOTP1", "pass": oathtool_hotp(&b32(KEY20), 1, 6)},
            {"call": "init_token", "params": {"type": "totp", "otpkey": KEY32, "serial": "PITOTP1",
                                              "otplen": 8, "hashlib": "sha256", "timeStep": "60"}},
            {"call": "check", "serial": "PITOTP1", "pass": totp_now},
            {"call": "export_pskc", "serials": ["PIHOTP1", "PITOTP1"], "psk": RFC_PSK,
             "file": file.display().to_string()},
        ]),
    );
    assert_eq!(out[1]["ok"], true);
    assert_eq!(out[4]["ok"], true, "{out:?}");
    assert_eq!(out[5]["count"], 2);

    // Through the admin API.
    let admin = s.admin_token("importer", AdminRole::Admin).await;
    let res = s
        .http
        .post(format!("{}/api/v1/tokens/import", s.url))
        .bearer_auth(&admin)
        .json(&json!({"data": std::fs::read_to_string(&file).unwrap(), "psk_hex": RFC_PSK}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["imported"], 2, "{report}");
    let hotp = token(&s, "PIHOTP1").unwrap();
    assert_eq!(hotp["description"], "hardware token 1");
    assert_eq!(hotp["counter"], 2);
    let totp = token(&s, "PITOTP1").unwrap();
    assert_eq!(
        (
            totp["algorithm"].as_str(),
            totp["digits"].as_u64(),
            totp["period"].as_u64()
        ),
        (Some("SHA256"), Some(8), Some(60))
    );
    // A large file is read for a signed-in administrator only: without the bearer (or with a
    // wrong one) nothing past the usual 64 KiB is read.
    let big = json!({"data": "x".repeat(200 * 1024), "psk_hex": RFC_PSK});
    for bearer in [None, Some("not-a-session")] {
        let mut req = s
            .http
            .post(format!("{}/api/v1/tokens/import", s.url))
            .json(&big);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 413, "{bearer:?}");
    }
    let res = s
        .http
        .post(format!("{}/api/v1/tokens/import", s.url))
        .bearer_auth(&admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "read, and refused as no token file");
    // A wrong key through the API: refused per entry, nothing stored.
    let res = s
        .http
        .post(format!("{}/api/v1/tokens/import", s.url))
        .bearer_auth(&admin)
        .json(&json!({"data": "<KeyContainer", "psk_hex": RFC_PSK}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    for (serial, user) in [("PIHOTP1", "bob"), ("PITOTP1", "carol")] {
        let res = s
            .http
            .post(format!("{}/api/v1/tokens/{serial}/assign", s.url))
            .bearer_auth(&admin)
            .json(&json!({"user": user}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // Codes used in privacyIDEA before the export stay used.
    let used = oathtool_hotp(&b32(KEY20), 1, 6);
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", &used)]).await.0,
        "REJECT"
    );
    let next = oathtool_hotp(&b32(KEY20), 2, 6);
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", &next)]).await.0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[("user", "carol"), ("pass", &totp_now)]).await.0,
        "REJECT"
    );
    let later = oathtool_totp(&b32(KEY32), s.now() + 60, 8, 60, "SHA256");
    assert_eq!(
        s.check(&[("user", "carol"), ("pass", &later)]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

async fn imports_privacyidea_csv(backend: Backend) {
    let s = TestServer::start(backend, None).await;
    s.add_user("alice", Some("alice-password")).await;
    let csv = s.dir.path().join("tokens.csv");
    std::fs::write(
        &csv,
        format!(
            "# version: 2\n\
             alice, resolver1, default, CSV1, {KEY20}, hotp, 6, 5\n\
             , , , CSV2, {KEY32}, totp, 8, 60\n\
             nobody, resolver1, default, CSV3, {KEY20}, hotp\n\
             alice, resolver1, default, CSV4, 31zz, hotp\n\
             , , , CSV5, {KEY20}, totp, 7\n"
        ),
    )
    .unwrap();
    // privacyIDEA's own reading of the file.
    let pi = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[s.dir.path().join("privacyidea").display().to_string()],
        &json!([{"call": "parse_csv", "file": csv.display().to_string()}]),
    );
    let pi = &pi[0];
    assert_eq!(pi["CSV1"]["counter"], 5);
    assert_eq!(pi["CSV1"]["user"]["username"], "alice");
    assert_eq!(pi["CSV2"]["hashlib"], "sha256");

    let (ok, report, _) = import(&s, &[csv.to_str().unwrap()], None);
    assert!(!ok, "CSV3, CSV4 and CSV5 are refused");
    let results: Vec<(u64, &str, &str)> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["serial"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (2, "CSV1", "imported"),
            (3, "CSV2", "imported"),
            (4, "CSV3", "refused"),
            (5, "CSV4", "refused"),
            (6, "CSV5", "refused"),
        ]
    );
    assert!(
        report["entries"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    for serial in ["CSV3", "CSV4", "CSV5"] {
        assert!(token(&s, serial).is_none(), "{serial} stored");
    }
    let csv1 = token(&s, "CSV1").unwrap();
    assert_eq!(csv1["user"], "alice");
    assert_eq!(csv1["counter"], pi["CSV1"]["counter"]);
    let csv2 = token(&s, "CSV2").unwrap();
    assert_eq!(csv2["algorithm"], "SHA256");
    assert_eq!(csv2["period"].as_u64(), Some(60));
    assert_eq!(
        csv2["digits"].as_u64(),
        pi["CSV2"]["otplen"].as_str().and_then(|d| d.parse().ok())
    );
    // alice's imported token counts from 5.
    let code = oathtool_hotp(&b32(KEY20), 5, 6);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &code)]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}

both_backends!(
    imports_rfc6030_files,
    imports_what_privacyidea_wrote,
    imports_privacyidea_csv
);
