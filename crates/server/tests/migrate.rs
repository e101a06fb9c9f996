//! `tessera migrate privacyidea` (issue 16, item 5): privacyIDEA 3.14 itself (from PyPI) makes
//! an installation — a passwd resolver, a realm, tokens with PINs hashed by privacyIDEA, codes
//! used and a wrong one counted there, a policy — and Tessera moves it: codes and PINs work
//! after, codes used before are refused, PINs are re-hashed at the first sign-in, a second run
//! changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, tessera};
use serde_json::{Value, json};
use tessera_core::ids::Serial;
use tessera_core::store::TokenStore;
use tessera_testkit::{oathtool_hotp, oathtool_totp};

const KEY20: &str = "3132333435363738393031323334353637383930";
const KEY32: &str = "3132333435363738393031323334353637383930313233343536373839303132";

fn b32(hex: &str) -> String {
    data_encoding::BASE32_NOPAD.encode(&data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap())
}

/// `tessera migrate privacyidea … --json`: (exit status 0, report, standard error).
fn migrate(s: &TestServer, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["migrate", "privacyidea"];
    all.extend_from_slice(args);
    all.push("--json");
    common::json_outcome(tessera(s, &all))
}

/// The same with `stdin` on standard input.
fn migrate_stdin(s: &TestServer, args: &[&str], stdin: &str) -> (bool, Value, String) {
    let mut all = vec!["migrate", "privacyidea", "--json"];
    all.extend_from_slice(args);
    common::json_outcome(common::tessera_stdin(s, &all, stdin))
}

fn entry<'a>(report: &'a Value, serial: &str) -> &'a Value {
    report["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["serial"] == serial)
        .unwrap_or_else(|| panic!("{serial} not in {report}"))
}

/// The token's PIN hash once it no longer starts with `old` (the re-hash runs beside the
/// sign-in that found the PIN right).
async fn rehashed(s: &TestServer, serial: &str, old: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let now = pin_hash(s, serial).await;
        if !now.starts_with(old) {
            return now;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{serial}'s PIN not re-hashed: {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn pin_hash(s: &TestServer, serial: &str) -> String {
    s.running
        .as_ref()
        .unwrap()
        .app
        .store
        .token(&Serial::from(serial))
        .await
        .unwrap()
        .unwrap()
        .pin_hash
        .unwrap()
}

/// The database a privacyIDEA installation keeps its tokens in.
#[derive(Clone, Copy, Debug)]
enum PiDb {
    Sqlite,
    Postgres,
    Mariadb,
}

/// A throwaway MariaDB database (MariaDB runs on the machine: 127.0.0.1:3306, root).
struct MariaDb {
    name: String,
}

impl MariaDb {
    fn create() -> MariaDb {
        let name = format!(
            "tessera_pi_{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        mysql(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
        MariaDb { name }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        mysql(&format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros() as u64
        % 1000
}

fn mysql(sql: &str) {
    let out = std::process::Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
        .output()
        .expect("the mysql client (MariaDB) is installed by the README's test command");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn moves_an_installation(backend: Backend) {
    moves(backend, PiDb::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_privacyidea_on_postgresql() {
    moves(Backend::Sqlite, PiDb::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_privacyidea_on_mariadb() {
    moves(Backend::Sqlite, PiDb::Mariadb).await;
}

async fn moves(backend: Backend, pi_db: PiDb) {
    let s = TestServer::start(backend, None).await;
    let pg;
    let maria;
    let mut peer_args = vec![];
    match pi_db {
        PiDb::Sqlite => {}
        PiDb::Postgres => {
            pg = tessera_testkit::PgDatabase::create().await;
            let rest = pg.url.split_once("://").unwrap().1;
            peer_args.push(format!("postgresql+psycopg2://{rest}"));
        }
        PiDb::Mariadb => {
            maria = MariaDb::create();
            peer_args.push(format!(
                "mysql+pymysql://root@127.0.0.1:3306/{}?charset=utf8mb4",
                maria.name
            ));
        }
    }
    for user in ["alice", "bob", "carol"] {
        s.add_user(user, None).await;
    }
    // carol has no phone number yet: her SMS token's number becomes hers.
    s.admin()
        .update_user(
            &common::actor(),
            None,
            "carol",
            tessera_core::model::UserPatch {
                phone: Some(None),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let work = s.dir.path().join("privacyidea");
    std::fs::create_dir_all(&work).unwrap();
    let passwd = work.join("passwd");
    std::fs::write(
        &passwd,
        "alice:x:1001:1001:Alice:/home/alice:/bin/sh\n\
         bob:x:1002:1002:Bob:/home/bob:/bin/sh\n\
         carol:x:1003:1003:Carol:/home/carol:/bin/sh\n",
    )
    .unwrap();
    let now = s.now();
    let used_totp = oathtool_totp(&b32(KEY32), now, 8, 60, "SHA256");
    let mut args = vec![work.display().to_string()];
    args.extend(peer_args);
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &args,
        &json!([
            {"call": "resolver", "params": {"resolver": "files", "type": "passwdresolver",
                                            "fileName": passwd.display().to_string()}},
            {"call": "realm", "name": "corp", "resolvers": ["files"]},
            {"call": "init_token", "user": "alice", "realm": "corp",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIH1", "pin": "12",
                        "description": "alice's key fob"}},
            {"call": "check", "serial": "PIH1", "pass": format!("12{}", oathtool_hotp(&b32(KEY20), 0, 6))},
            {"call": "check", "serial": "PIH1", "pass": format!("12{}", oathtool_hotp(&b32(KEY20), 1, 6))},
            {"call": "check", "serial": "PIH1", "pass": "12000000"},
            {"call": "init_token", "user": "bob", "realm": "corp",
             "params": {"type": "totp", "otpkey": KEY32, "serial": "PIT1", "pin": "tp",
                        "otplen": 8, "hashlib": "sha256", "timeStep": "60"}},
            {"call": "check", "serial": "PIT1", "pass": format!("tp{used_totp}")},
            {"call": "init_token", "user": "carol", "realm": "corp",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIPB1"}},
            {"call": "pin_hash", "serial": "PIPB1", "pin": "pb-pin", "scheme": "pbkdf2_sha512"},
            {"call": "init_token", "user": "carol", "realm": "corp",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIOFF1"}},
            {"call": "disable", "serial": "PIOFF1"},
            {"call": "init_token", "user": "carol", "realm": "corp",
             "params": {"type": "sms", "phone": "+905551234567", "serial": "PISMS1"}},
            {"call": "init_token", "params": {"type": "hotp", "otpkey": KEY20, "serial": "PISPARE"}},
            {"call": "init_token", "params": {"type": "spass", "serial": "PISPASS", "pin": "x"}},
            {"call": "policy", "name": "pol1", "scope": "authentication", "action": "otppin=tokenpin"},
            {"call": "token", "serial": "PIH1"},
        ]),
    );
    assert_eq!(out[3]["ok"], true);
    assert_eq!(out[4]["ok"], true);
    assert_eq!(out[5]["ok"], false);
    assert_eq!(out[7]["ok"], true, "{out:?}");
    assert!(
        out[9]["pin_hash"]
            .as_str()
            .unwrap()
            .starts_with("$pbkdf2-sha512$")
    );
    assert_eq!(out[16]["failcount"], 1);
    let cfg = work.join("pi.cfg").display().to_string();

    // A key file that is not the installation's: nothing moves.
    let other_key = s.dir.path().join("other-enckey");
    std::fs::write(&other_key, [7u8; 96]).unwrap();
    let (ok, report, err) = migrate(
        &s,
        &[
            &cfg,
            "--realm-map",
            "corp=default",
            "--encfile",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert_eq!(report, Value::Null);
    assert!(
        err.contains("does not open this installation's token seeds"),
        "{err}"
    );
    assert!(!tessera(&s, &["token", "show", "PIH1"]).status.success());
    let carol: Value =
        serde_json::from_slice(&tessera(&s, &["user", "show", "carol", "--json"]).stdout).unwrap();
    assert_eq!(carol["phone"], Value::Null, "nothing changed");

    // The dry run reports and stores nothing.
    let (ok, report, err) = migrate(&s, &[&cfg, "--realm-map", "corp=default", "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(entry(&report, "PIH1")["result"], "would import");
    assert!(!tessera(&s, &["token", "show", "PIH1"]).status.success());

    let (ok, report, err) = migrate(&s, &[&cfg, "--realm-map", "corp=default"]);
    assert!(ok, "{err}\n{report}");
    assert_eq!(report["imported"], 5, "{report}");
    assert_eq!(entry(&report, "PIH1")["owner"], "alice@default");
    assert_eq!(entry(&report, "PISPASS")["result"], "not migrated");
    assert_eq!(entry(&report, "PISMS1")["result"], "contact");
    assert_eq!(
        entry(&report, "PISMS1")["detail"],
        "carol's phone set to +905551234567"
    );
    assert_eq!(entry(&report, "PISPARE")["owner"], Value::Null);
    assert!(
        report["not_migrated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("1 policies")),
        "{report}"
    );

    // Codes used in privacyIDEA stay used; the next ones pass with the PINs set there.
    let hotp = |c| oathtool_hotp(&b32(KEY20), c, 6);
    // privacyIDEA's own Argon2 parameters, as it hashed the PIN.
    let before = pin_hash(&s, "PIH1").await;
    assert!(
        before.starts_with("$argon2id$v=19$m=65536,t=9,"),
        "{before}"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("12{}", hotp(1)))])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("12{}", hotp(2)))])
            .await
            .0,
        "ACCEPT"
    );
    // Not Tessera's parameters: re-hashed once the PIN was found right.
    let after = rehashed(&s, "PIH1", &before).await;
    assert_ne!(before, after);
    assert!(after.starts_with("$argon2id$v=19$m=8192,t=1,"), "{after}");
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("12{}", hotp(3)))])
            .await
            .0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", &format!("tp{used_totp}"))])
            .await
            .0,
        "REJECT"
    );
    let next = oathtool_totp(&b32(KEY32), s.now() + 60, 8, 60, "SHA256");
    assert_eq!(
        s.check(&[("user", "bob"), ("pass", &format!("tp{next}"))])
            .await
            .0,
        "ACCEPT"
    );
    // A PBKDF2 PIN (PI_HASH_ALGO_LIST = ['pbkdf2_sha512']) passes and becomes Argon2.
    assert_eq!(
        s.check(&[("user", "carol"), ("pass", &format!("wrong{}", hotp(0)))])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "carol"), ("pass", &format!("pb-pin{}", hotp(0)))])
            .await
            .0,
        "ACCEPT"
    );
    assert!(
        rehashed(&s, "PIPB1", "$pbkdf2")
            .await
            .starts_with("$argon2id$")
    );

    let show = |serial: &str| -> Value {
        serde_json::from_slice(&tessera(&s, &["token", "show", serial, "--json"]).stdout).unwrap()
    };
    let h1 = show("PIH1");
    assert_eq!(h1["description"], "alice's key fob");
    let t1 = show("PIT1");
    assert_eq!(
        (
            t1["algorithm"].as_str(),
            t1["digits"].as_u64(),
            t1["period"].as_u64()
        ),
        (Some("SHA256"), Some(8), Some(60))
    );
    assert_eq!(show("PIOFF1")["state"], "disabled");
    assert_eq!(show("PISPARE")["user"], "");
    let carol: Value =
        serde_json::from_slice(&tessera(&s, &["user", "show", "carol", "--json"]).stdout).unwrap();
    assert_eq!(carol["phone"], "+905551234567");
    assert!(!s.audit("token_import").await.is_empty());

    // Again: everything is there already, nothing changes.
    let (ok, report, err) = migrate(&s, &[&cfg, "--realm-map", "corp=default"]);
    assert!(ok, "{err}");
    assert_eq!(
        (report["imported"].as_u64(), report["exists"].as_u64()),
        (Some(0), Some(5)),
        "{report}"
    );
    assert_eq!(show("PIH1")["counter"], 4);

    // alice signs in at privacyIDEA once more before the cut-over (codes 4 and 5); the next
    // run moves the counter past them, and they are refused here.
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &args,
        &json!([
            {"call": "check", "serial": "PIH1", "pass": format!("12{}", hotp(4))},
            {"call": "check", "serial": "PIH1", "pass": format!("12{}", hotp(5))},
        ]),
    );
    assert_eq!(
        (out[0]["ok"].as_bool(), out[1]["ok"].as_bool()),
        (Some(true), Some(true))
    );
    let (ok, report, err) = migrate(&s, &[&cfg, "--realm-map", "corp=default"]);
    assert!(ok, "{err}");
    assert!(
        entry(&report, "PIH1")["detail"]
            .as_str()
            .unwrap()
            .contains("moved forward to 6"),
        "{report}"
    );
    assert_eq!(show("PIH1")["counter"], 6);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("12{}", hotp(5)))])
            .await
            .0,
        "REJECT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &format!("12{}", hotp(6)))])
            .await
            .0,
        "ACCEPT"
    );
    s.stop().await;
}

/// The fail count privacyIDEA counted comes along.
async fn carries_fail_counts(backend: Backend) {
    let s = TestServer::start(backend, None).await;
    s.add_user("dave", None).await;
    let work = s.dir.path().join("privacyidea");
    std::fs::create_dir_all(&work).unwrap();
    let passwd = work.join("passwd");
    std::fs::write(&passwd, "dave:x:2001:2001:Dave:/home/dave:/bin/sh\n").unwrap();
    let mut steps = vec![
        json!({"call": "resolver", "params": {"resolver": "files", "type": "passwdresolver", "fileName": passwd.display().to_string()}}),
        json!({"call": "realm", "name": "default", "resolvers": ["files"]}),
        json!({"call": "init_token", "user": "dave", "realm": "default", "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIF1", "pin": "9"}}),
    ];
    for _ in 0..3 {
        steps.push(json!({"call": "check", "serial": "PIF1", "pass": "9000000"}));
    }
    // The key file encrypted with a password, as `pi-manage setup encrypt_enckey` leaves it.
    let encrypted = work.join("enckey.enc");
    steps.push(json!({"call": "encrypt_enckey", "password": "key-file-pw",
                      "file": encrypted.display().to_string()}));
    common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[work.display().to_string()],
        &json!(steps),
    );
    let cfg = work.join("pi.cfg").display().to_string();
    let enc = encrypted.display().to_string();
    let (ok, _, err) = migrate(&s, &[&cfg, "--encfile", &enc]);
    assert!(!ok);
    assert!(err.contains("--encfile-password-stdin"), "{err}");
    let (ok, _, err) = migrate_stdin(
        &s,
        &[&cfg, "--encfile", &enc, "--encfile-password-stdin"],
        "wrong\n",
    );
    assert!(!ok);
    assert!(err.contains("does not open with this password"), "{err}");
    assert!(!tessera(&s, &["token", "show", "PIF1"]).status.success());
    let (ok, _, err) = migrate_stdin(
        &s,
        &[&cfg, "--encfile", &enc, "--encfile-password-stdin"],
        "key-file-pw\n",
    );
    assert!(ok, "{err}");
    let t: Value =
        serde_json::from_slice(&tessera(&s, &["token", "show", "PIF1", "--json"]).stdout).unwrap();
    assert_eq!(t["fail_count"], 3);
    assert_eq!(t["user"], "dave");
    s.stop().await;
}

/// Owners kept by an SQL resolver: their login names read from its table with its own
/// connection settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_owners_of_sql_resolvers() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.add_user("erin", None).await;
    let work = s.dir.path().join("privacyidea");
    let users = s.dir.path().join("users.sqlite");
    let users_path = users.display().to_string();
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[work.display().to_string()],
        &json!([
            {"call": "sqlite", "file": users_path, "sql": [
                "CREATE TABLE people (uid INTEGER PRIMARY KEY, login TEXT, mail TEXT)",
                "INSERT INTO people VALUES (41, 'frank', 'frank@example.org')",
                "INSERT INTO people VALUES (42, 'erin', 'erin@example.org')",
            ]},
            {"call": "resolver", "params": {
                "resolver": "sqlusers", "type": "sqlresolver", "Driver": "sqlite", "Server": "",
                "Port": "", "Database": users_path, "User": "", "Password": "", "Table": "people",
                "Map": "{\"userid\": \"uid\", \"username\": \"login\", \"email\": \"mail\"}",
                "Limit": "500", "Editable": "0", "Where": "", "conParams": "", "Encoding": "utf-8",
                "Password_Hash_Type": "SSHA256"}},
            {"call": "realm", "name": "corp", "resolvers": ["sqlusers"]},
            {"call": "init_token", "user": "erin", "realm": "corp",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PISQL1", "pin": "55"}},
        ]),
    );
    assert_eq!(out.len(), 4);
    let (ok, report, err) = migrate(
        &s,
        &[
            &work.join("pi.cfg").display().to_string(),
            "--realm-map",
            "corp=default",
        ],
    );
    assert!(ok, "{err}\n{report}");
    assert_eq!(
        entry(&report, "PISQL1")["owner"],
        "erin@default",
        "{report}"
    );
    let code = oathtool_hotp(&b32(KEY20), 0, 6);
    assert_eq!(
        s.check(&[("user", "erin"), ("pass", &format!("55{code}"))])
            .await
            .0,
        "ACCEPT"
    );
    s.stop().await;
}

/// Owners kept by an LDAP resolver are found in the directory by the id privacyIDEA keeps
/// (here OpenLDAP's entryUUID), and the resolver's settings come out as a Tessera LDAP source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_owners_of_ldap_resolvers() {
    use tessera_testkit::slapd::{BASE_DN, SVC_DN, SVC_PASSWORD, Slapd};
    let d = Slapd::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    // Tessera reads the same directory in its realm "corp".
    let source: tessera_core::model::UserSourceDef = serde_json::from_value(json!({
        "name": "corp", "type": "ldap",
        "ldap": {"directory": "openldap", "servers": [d.ldap_url], "base_dn": BASE_DN,
                 "bind_dn": SVC_DN, "bind_password": SVC_PASSWORD, "timeout_seconds": 2}
    }))
    .unwrap();
    s.admin().put(&common::actor(), source).await.unwrap();
    s.admin()
        .put(
            &common::actor(),
            tessera_core::model::Realm {
                name: "corp".into(),
                sources: vec!["corp".into()],
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let work = s.dir.path().join("privacyidea");
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[work.display().to_string()],
        &json!([
            {"call": "resolver", "params": {
                "resolver": "directory", "type": "ldapresolver",
                "LDAPURI": d.ldap_url, "LDAPBASE": BASE_DN, "BINDDN": SVC_DN, "BINDPW": SVC_PASSWORD,
                "LOGINNAMEATTRIBUTE": "uid", "LDAPSEARCHFILTER": "(objectClass=inetOrgPerson)",
                "USERINFO": "{\"username\": \"uid\", \"email\": \"mail\"}",
                "UIDTYPE": "entryUUID", "TIMEOUT": "5", "SIZELIMIT": "500", "AUTHTYPE": "Simple",
                "CACHE_TIMEOUT": "0", "NOREFERRALS": "True"}},
            {"call": "realm", "name": "corp", "resolvers": ["directory"]},
            {"call": "init_token", "user": "alice", "realm": "corp",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PILDAP1", "pin": "77"}},
            {"call": "init_token", "user": "carol", "realm": "corp",
             "params": {"type": "totp", "otpkey": KEY20, "serial": "PILDAP2"}},
        ]),
    );
    assert_eq!(out.len(), 4);
    let (ok, report, err) = migrate(&s, &[&work.join("pi.cfg").display().to_string()]);
    assert!(ok, "{err}\n{report}");
    assert_eq!(entry(&report, "PILDAP1")["owner"], "alice@corp", "{report}");
    assert_eq!(entry(&report, "PILDAP2")["owner"], "carol@corp");
    let src = &report["ldap_sources"][0];
    assert_eq!(src["ldap"]["attributes"]["unique_id"], "entryUUID");
    assert_eq!(src["ldap"]["bind_dn"], SVC_DN);
    assert!(src["ldap"].get("bind_password").is_none(), "{src}");
    let code = oathtool_hotp(&b32(KEY20), 0, 6);
    assert_eq!(
        s.check(&[("user", "alice@corp"), ("pass", &format!("77{code}"))])
            .await
            .0,
        "ACCEPT"
    );
    // For people: the source as a declarative file takes it.
    let out = tessera(
        &s,
        &[
            "migrate",
            "privacyidea",
            &work.join("pi.cfg").display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let toml_part = text.split("tessera apply FILE):").nth(1).unwrap();
    let decl: toml::Value = toml::from_str(toml_part).unwrap();
    assert_eq!(
        decl["user_source"][0]["ldap"]["attributes"]["unique_id"].as_str(),
        Some("entryUUID")
    );
    assert_eq!(decl["user_source"][0]["type"].as_str(), Some("ldap"));
    s.stop().await;
}

/// An LDAP resolver Tessera has no source for becomes one — `pi-<resolver>` with the
/// resolver's settings and its bind password — in the realm a mapping file names; a dry run
/// only says so; a second run finds it all in place; a resolver mapped to a source Tessera
/// does not have, or a mapping file that is not one, is refused with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn makes_ldap_sources_and_realms_of_ldap_resolvers() {
    use tessera_testkit::slapd::{BASE_DN, SVC_DN, SVC_PASSWORD, Slapd};
    let d = Slapd::start();
    let s = TestServer::start(Backend::Sqlite, None).await;
    let work = s.dir.path().join("privacyidea");
    let out = common::python_peer(
        "pi",
        "privacyidea_server.py",
        &[work.display().to_string()],
        &json!([
            {"call": "resolver", "params": {
                "resolver": "directory", "type": "ldapresolver",
                "LDAPURI": d.ldap_url, "LDAPBASE": BASE_DN, "BINDDN": SVC_DN, "BINDPW": SVC_PASSWORD,
                "LOGINNAMEATTRIBUTE": "uid", "LDAPSEARCHFILTER": "(objectClass=inetOrgPerson)",
                "USERINFO": "{\"username\": \"uid\", \"email\": \"mail\"}",
                "UIDTYPE": "entryUUID", "TIMEOUT": "5", "SIZELIMIT": "500", "AUTHTYPE": "Simple",
                "CACHE_TIMEOUT": "0", "NOREFERRALS": "True"}},
            {"call": "realm", "name": "staff", "resolvers": ["directory"]},
            {"call": "init_token", "user": "alice", "realm": "staff",
             "params": {"type": "hotp", "otpkey": KEY20, "serial": "PIMAP1", "pin": "55"}},
        ]),
    );
    assert_eq!(out.len(), 3);
    let cfg = work.join("pi.cfg").display().to_string();
    let map = work.join("map.toml");
    std::fs::write(&map, "[realms]\nstaff = \"people\"\n").unwrap();
    let map = map.display().to_string();
    let snap = || s.running.as_ref().unwrap().app.engine.snapshot();

    // Refused, nothing changed: a mapping file with something else in it; a resolver mapped
    // to a source Tessera does not have.
    let bad = work.join("bad.toml");
    std::fs::write(&bad, "[realm]\nstaff = \"people\"\n").unwrap();
    let (ok, _, err) = migrate(&s, &[&cfg, "--map", &bad.display().to_string()]);
    assert!(!ok && err.contains("[realms] and [resolvers]"), "{err}");
    let (ok, _, err) = migrate(
        &s,
        &[&cfg, "--map", &map, "--resolver-map", "directory=nowhere"],
    );
    assert!(
        !ok && err.contains("'nowhere', which Tessera does not have"),
        "{err}"
    );

    // A dry run says what it would make, and makes nothing.
    let (ok, report, err) = migrate(&s, &[&cfg, "--map", &map, "--dry-run"]);
    assert!(ok, "{err}\n{report}");
    let said = report["sources"].to_string();
    assert!(
        said.contains("would make the LDAP user source 'pi-directory'")
            && said.contains("realm people: would be made with the user source 'pi-directory'"),
        "{said}"
    );
    assert_eq!(
        entry(&report, "PIMAP1")["result"],
        "would import",
        "{report}"
    );
    assert!(
        !tessera(&s, &["source", "show", "pi-directory"])
            .status
            .success()
    );
    assert!(
        s.admin()
            .get::<tessera_core::model::Realm>("people")
            .is_err()
    );

    // For real: the source (its bind password kept sealed, never shown), the realm, the
    // token given to alice in it.
    let (ok, report, err) = migrate(&s, &[&cfg, "--map", &map]);
    assert!(ok, "{err}\n{report}");
    assert_eq!(
        entry(&report, "PIMAP1")["owner"],
        "alice@people",
        "{report}"
    );
    assert_eq!(entry(&report, "PIMAP1")["result"], "imported", "{report}");
    let shown = tessera(&s, &["--json", "source", "show", "pi-directory"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("entryUUID") && !shown.contains(SVC_PASSWORD),
        "{shown}"
    );
    let started = std::time::Instant::now();
    while snap().realm("people").is_none() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the realm did not reach the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let code = oathtool_hotp(&b32(KEY20), 0, 6);
    assert_eq!(
        s.check(&[("user", "alice@people"), ("pass", &format!("55{code}"))])
            .await
            .0,
        "ACCEPT"
    );
    // Again: all in place.
    let (ok, report, err) = migrate(&s, &[&cfg, "--map", &map]);
    assert!(ok, "{err}\n{report}");
    assert_eq!(entry(&report, "PIMAP1")["result"], "exists");
    assert!(
        report["sources"]
            .to_string()
            .contains("realm people finds its users already"),
        "{report}"
    );
    s.stop().await;
}

both_backends!(moves_an_installation, carries_fail_counts);
