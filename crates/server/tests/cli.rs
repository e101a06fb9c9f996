//! The command line as an administrator uses it: readable output, --json for scripts, non-zero
//! exit and a clear message on error, QR codes, apply/export, and changes reaching a running
//! server without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run_in(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.dir.path())
            .env("USER", "tester")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
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

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run_in(args, None);
        assert!(ok, "tessera {args:?} failed: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, _, err) = self.run_in(args, None);
        assert!(!ok, "tessera {args:?} should fail");
        assert!(err.starts_with("error: "), "{err}");
        err
    }
}

#[test]
fn users_in_tables_and_json() {
    let c = Cli::new();
    let (ok, out, err) = c.run_in(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--email",
            "alice@example.org",
            "--group",
            "vpn",
            "--group",
            "staff",
            "--expires",
            "2030-01-31",
        ],
        Some("alice-password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("Created user 'alice' in source 'local'."));
    assert!(out.contains("2030-01-31T00:00:00Z"));
    c.ok(&[
        "user",
        "add",
        "bob",
        "--given-name",
        "Bob",
        "--surname",
        "Builder",
    ]);
    let table = c.ok(&["user", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USERNAME"), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bob") && l.contains("Bob Builder"))
    );
    let users = c.json(&["user", "list", "--search", "ali"]);
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["groups"], serde_json::json!(["vpn", "staff"]));
    let u = c.json(&[
        "user",
        "set",
        "alice",
        "--email",
        "",
        "--disable",
        "--expires",
        "never",
        "--no-groups",
    ]);
    assert_eq!(u["email"], Value::Null);
    assert_eq!(u["enabled"], false);
    assert_eq!(u["expires_at"], Value::Null);
    assert_eq!(u["groups"], serde_json::json!([]));
    // Errors: clear message, non-zero exit, nothing changed.
    assert!(
        c.fails(&["user", "add", "ALICE"])
            .contains("already exists")
    );
    let err = c.fails(&[
        "user",
        "add",
        "carol",
        "--email",
        "nope",
        "--password",
        "short",
    ]);
    assert!(err.contains("email") && err.contains("password"), "{err}");
    assert!(c.fails(&["user", "show", "carol"]).contains("not found"));
    assert!(
        c.fails(&["user", "add", "dave", "--expires", "someday"])
            .contains("--expires")
    );
    let out = c.ok(&["user", "delete", "bob"]);
    assert!(out.contains("Deleted user 'bob' and 0 token(s)."));
    let audit = c.json(&["audit", "--action", "user_create"]);
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert_eq!(audit[0]["actor"], "cli:tester");
}

#[test]
fn token_enrollment_prints_uri_and_qr() {
    let c = Cli::new();
    c.ok(&["user", "add", "alice"]);
    let out = c.ok(&["token", "enroll", "totp", "--user", "alice"]);
    assert!(
        out.contains("otpauth://totp/Tessera:alice%40default?secret="),
        "{out}"
    );
    assert!(out.contains('█') || out.contains('▀'), "terminal QR");
    let svg = c.dir.path().join("qr.svg");
    let out = c.ok(&[
        "token",
        "enroll",
        "hotp",
        "--user",
        "alice",
        "--qr",
        "svg",
        "--qr-file",
        svg.to_str().unwrap(),
        "--pin",
        "1234",
    ]);
    assert!(out.contains("QR code written to"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let png = c.dir.path().join("qr.png");
    let e = c.json(&[
        "token",
        "enroll",
        "totp",
        "--user",
        "alice",
        "--qr",
        "png",
        "--qr-file",
        png.to_str().unwrap(),
        "--digits",
        "8",
        "--algorithm",
        "SHA256",
        "--period",
        "60",
    ]);
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        e["uri"]
            .as_str()
            .unwrap()
            .contains("algorithm=SHA256&digits=8")
    );
    assert!(e["uri"].as_str().unwrap().contains("period=60"));
    let serial = e["token"]["serial"].as_str().unwrap().to_string();
    let list = c.json(&["token", "list", "--user", "alice"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|t| t["has_pin"] == true)
            .count(),
        1
    );
    c.ok(&["token", "disable", &serial]);
    c.ok(&[
        "token",
        "set",
        &serial,
        "--description",
        "backup",
        "--max-fail",
        "3",
    ]);
    let t = c.json(&["token", "show", &serial]);
    assert_eq!(
        (
            t["state"].as_str(),
            t["description"].as_str(),
            t["max_fail"].as_i64()
        ),
        (Some("disabled"), Some("backup"), Some(3))
    );
    c.ok(&["token", "revoke", &serial]);
    assert!(c.fails(&["token", "enable", &serial]).contains("revoked"));
    assert!(
        c.fails(&["token", "enroll", "totp", "--user", "alice", "--qr", "svg"])
            .contains("--qr-file")
    );
    assert!(
        c.fails(&[
            "token", "enroll", "totp", "--user", "nobody", "--qr", "none"
        ])
        .contains("not found")
    );
    assert!(
        c.fails(&[
            "token",
            "enroll",
            "totp",
            "--user",
            "alice",
            "--secret",
            "not base32!",
            "--qr",
            "none"
        ])
        .contains("base32")
    );
    c.ok(&["token", "delete", &serial]);
    assert!(c.fails(&["token", "show", &serial]).contains("not found"));
}

#[test]
fn apply_and_export_are_idempotent_with_a_dry_run_diff() {
    let c = Cli::new();
    let file = c.dir.path().join("tessera-config.toml");
    std::fs::write(
        &file,
        r#"
[settings]
lock_period_minutes = 15
prepend_pin = false

[[user_source]]
name = "local"
type = "local"

[[realm]]
name = "default"
sources = ["local"]

[[application]]
name = "default"
factors = [{ methods = ["soft_otp"] }]

[[application]]
name = "vpn"
type = "normal"
description = "VPN logins"
factors = [{ methods = ["password"] }, { methods = ["soft_otp"] }]
"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let dry = c.ok(&["apply", f, "--dry-run"]);
    assert!(dry.contains("+ create application 'vpn'"), "{dry}");
    assert!(
        dry.contains("~ setting lock_period_minutes: 30 -> 15"),
        "{dry}"
    );
    // The file leaves out the descriptions the defaults came with: a declarative file is the
    // whole truth about what it names.
    assert!(dry.contains("~ update realm 'default'"), "{dry}");
    assert!(
        dry.contains("6 change(s) would be made (dry run: nothing changed)."),
        "{dry}"
    );
    assert!(c.fails(&["app", "show", "vpn"]).contains("not found"));
    let applied = c.ok(&["apply", f]);
    assert!(applied.contains("6 change(s) made."), "{applied}");
    assert!(c.ok(&["apply", f]).contains("No changes."));
    assert!(c.ok(&["app", "list"]).contains("password -> soft_otp"));
    // Export, then apply the export: nothing to do.
    let exported = c.dir.path().join("export.toml");
    c.ok(&["export", "-o", exported.to_str().unwrap()]);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        text.contains("[[application]]") && text.contains("lock_period_minutes = 15"),
        "{text}"
    );
    assert!(
        c.ok(&["apply", exported.to_str().unwrap(), "--prune"])
            .contains("No changes.")
    );
    // A broken file lists its problems and changes nothing.
    std::fs::write(
        &file,
        "[[realm]]\nname = \"default\"\nsources = [\"nope\"]\n[settings]\ndefault_otp_length = 5\n",
    )
    .unwrap();
    let err = c.fails(&["apply", f]);
    assert!(
        err.contains("user source 'nope' does not exist") && err.contains("default_otp_length"),
        "{err}"
    );
    std::fs::write(&file, "[[realm]\n").unwrap();
    assert!(c.fails(&["apply", f]).contains("tessera-config.toml"));
    assert!(c.ok(&["app", "show", "vpn"]).contains("VPN logins"));
}

#[test]
fn settings_apps_realms_sources_from_the_command_line() {
    let c = Cli::new();
    let shown = c.ok(&["settings", "show"]);
    assert!(shown.contains("split_at_sign") && shown.contains("challenge_validity_seconds"));
    assert_eq!(c.ok(&["settings", "show", "max_otp_attempts"]).trim(), "5");
    let err = c.fails(&[
        "settings",
        "set",
        "max_otp_attempts=0",
        "prepend_pin=perhaps",
        "nonsense=1",
    ]);
    assert!(
        err.contains("max_otp_attempts") && err.contains("prepend_pin") && err.contains("nonsense"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["settings", "show", "max_otp_attempts"]).trim(),
        "5",
        "nothing changed"
    );
    assert!(
        c.ok(&["settings", "set", "max_otp_attempts=3"])
            .contains("max_otp_attempts = 3")
    );
    c.ok(&["source", "add", "partners"]);
    c.ok(&["realm", "add", "partners", "--source", "partners"]);
    assert!(c.ok(&["realm", "list"]).contains("partners"));
    c.ok(&["user", "add", "pat", "--source", "partners"]);
    assert!(
        c.fails(&["source", "delete", "partners"])
            .contains("still holds 1 user(s)")
    );
    c.ok(&["user", "delete", "pat", "--source", "partners"]);
    assert!(
        c.fails(&["source", "delete", "partners"])
            .contains("realm 'partners': user source 'partners' does not exist")
    );
    c.ok(&[
        "app",
        "add",
        "web",
        "--factor",
        "password,soft_otp",
        "--description",
        "either",
    ]);
    let app = c.json(&["app", "show", "web"]);
    assert_eq!(
        app["factors"][0]["methods"],
        serde_json::json!(["password", "soft_otp"])
    );
    assert!(
        c.fails(&["app", "add", "web2", "--factor", "smoke-signals"])
            .contains("unknown method")
    );
    assert!(
        c.fails(&["app", "add", "web", "--factor", "password"])
            .contains("already exists")
    );
    c.ok(&["app", "delete", "web"]);
    let (ok, out, _) = c.run_in(&["check-config"], None);
    assert!(ok && out.contains("configuration is valid"));
    // The first administrator.
    let (ok, _, err) = c.run_in(
        &["admin", "create", "admin", "--password-stdin"],
        Some("a-long-enough-password\n"),
    );
    assert!(ok, "{err}");
    assert!(
        c.fails(&["admin", "create", "admin2", "--password", "short"])
            .contains("12 characters")
    );
    assert!(
        c.fails(&[
            "admin",
            "create",
            "x",
            "--role",
            "god",
            "--password",
            "a-long-enough-password"
        ])
        .contains("--role")
    );
    assert!(c.ok(&["admin", "list"]).contains("admin"));
}

#[test]
fn radius_clients_from_the_command_line() {
    let cli = Cli::new();
    cli.ok(&[
        "app", "add", "vpn", "--factor", "password", "--factor", "soft_otp",
    ]);
    let err = cli.fails(&["client", "add", "radius", "fw", "--nas-ip", "10.0.0.0/24"]);
    assert!(err.contains("--secret-stdin"), "{err}");
    let err = cli.fails(&[
        "client",
        "add",
        "radius",
        "fw",
        "--nas-ip",
        "10.0.0.999",
        "--secret",
        "short",
        "--device-type",
        "toaster",
    ]);
    assert!(err.contains("--nas-ip"), "{err}");
    let (ok, out, err) = cli.run_in(
        &[
            "client",
            "add",
            "radius",
            "fw",
            "--nas-ip",
            "10.0.0.0/24",
            "--nas-ip",
            "192.0.2.1",
            "--secret-stdin",
            "--application",
            "vpn",
            "--device-type",
            "firewall",
            "--reject-message",
            "Access denied",
        ],
        Some("a-long-shared-secret\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("10.0.0.0/24, 192.0.2.1"), "{out}");
    assert!(!out.contains("a-long-shared-secret"), "{out}");
    let shown = cli.ok(&["client", "show", "fw", "--show-secret"]);
    assert!(shown.contains("a-long-shared-secret"), "{shown}");
    let list = cli.ok(&["client", "list"]);
    assert!(
        list.contains("fw") && list.contains("firewall") && list.contains("vpn"),
        "{list}"
    );
    // Generated secrets are printed once.
    let (ok, _, err) = cli.run_in(
        &[
            "client",
            "add",
            "radius",
            "wifi",
            "--nas-ip",
            "10.1.0.0/16",
            "--generate-secret",
            "--device-type",
            "wireless-controller",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(err.contains("Generated shared secret"), "{err}");
    let secret = err.lines().last().unwrap().trim().to_string();
    assert_eq!(secret.len(), 32);
    let j = cli.json(&["client", "show", "wifi", "--show-secret"]);
    assert_eq!(j["secret"], secret.as_str());
    assert_eq!(j["device_type"], "wireless_controller");
    cli.ok(&[
        "client",
        "set",
        "wifi",
        "--rate-limit",
        "50",
        "--allow-missing-message-authenticator",
    ]);
    let j = cli.json(&["client", "show", "wifi"]);
    assert_eq!(j["rate_limit"], 50);
    assert_eq!(j["require_message_authenticator"], false);
    assert!(j.get("secret").is_none());
    // Exports leave secrets out; applying one keeps them.
    let exported = cli.ok(&["export"]);
    assert!(exported.contains("[[radius_client]]"), "{exported}");
    assert!(!exported.contains(&secret) && !exported.contains("a-long-shared-secret"));
    let file = cli.dir.path().join("exported.toml");
    std::fs::write(&file, &exported).unwrap();
    let out = cli.ok(&["apply", file.to_str().unwrap(), "--prune"]);
    assert!(out.contains("No changes."), "{out}");
    let j = cli.json(&["client", "show", "wifi", "--show-secret"]);
    assert_eq!(j["secret"], secret.as_str());
    // The dictionary, for writing reply rules.
    let attrs = cli.ok(&["client", "attributes", "fortinet"]);
    assert!(
        attrs.contains("Fortinet-Group-Name") && attrs.contains("12356"),
        "{attrs}"
    );
    assert!(
        cli.fails(&["client", "attributes", "acme"])
            .contains("unknown vendor")
    );
    cli.ok(&["client", "delete", "wifi"]);
    assert!(cli.fails(&["client", "show", "wifi"]).contains("not found"));
}

#[test]
fn a_bad_worker_count_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for bad in ["abc", "0", "-3", "100000"] {
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .env("TOKIO_WORKER_THREADS", bad)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("TOKIO_WORKER_THREADS must be a number from 1 to 1024"),
            "{err}"
        );
        assert!(!data.exists(), "{bad}: the data directory was created");
    }
}

/// `tessera … | head -n 1`: the reader goes away after one line; tessera stops quietly (no
/// "Broken pipe" panic) and successfully.
#[test]
fn output_into_a_closed_pipe_stops_quietly() {
    let c = Cli::new();
    // Enough lines that the pipe is closed while tessera still writes.
    assert!(c.ok(&["settings", "show"]).lines().count() > 50);
    // The reader closes its end first (and says so with a file); tessera starts writing only
    // after that, so the write meets a closed pipe.
    let script = format!(
        "(while [ ! -e closed ]; do sleep 0.05; done; exec '{BIN}' settings show --data-dir '{}') 2>err.txt \
           | (exec 0<&-; touch closed; sleep 2); \
         echo \"status ${{PIPESTATUS[0]}}\"; cat err.txt",
        c.dir.path().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("status 0"), "{stdout}{stderr}");
    assert!(!stdout.contains("panicked"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--secret-hex` imports privacyIDEA's `otpkey` format; hexadecimal text given to `--secret`
/// is refused rather than read as another key in base32.
#[test]
fn hex_seeds_are_imported_with_secret_hex_only() {
    let c = Cli::new();
    c.ok(&["user", "add", "alice"]);
    let rfc_key = "3132333435363738393031323334353637383930";
    let err = c.fails(&[
        "token", "enroll", "hotp", "--user", "alice", "--secret", rfc_key,
    ]);
    assert!(err.contains("--secret-hex"), "{err}");
    let out = c.ok(&[
        "token",
        "enroll",
        "hotp",
        "--user",
        "alice",
        "--secret-hex",
        rfc_key,
        "--qr",
        "none",
    ]);
    assert!(
        out.contains("secret (base32): GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        "{out}"
    );
}

/// `app set` changes only what is given: `--challenge-response true` alone keeps the factors,
/// type and description; `app add` without factors says what to give.
#[test]
fn app_set_changes_only_what_is_given() {
    let c = Cli::new();
    c.ok(&["app", "list"]);
    let err = c.fails(&["app", "add", "web"]);
    assert!(err.contains("--factor"), "{err}");
    c.ok(&[
        "app",
        "add",
        "web",
        "--factor",
        "password",
        "--factor",
        "soft_otp",
        "--description",
        "Intranet",
    ]);
    c.ok(&["app", "set", "web", "--challenge-response", "true"]);
    let app = c.json(&["app", "show", "web"]);
    assert_eq!(app["challenge_response"], true, "{app}");
    assert_eq!(app["description"], "Intranet");
    assert_eq!(app["factors"].as_array().unwrap().len(), 2, "{app}");
    assert!(
        c.ok(&["app", "show", "web"])
            .contains("the PIN alone asks for the code")
    );
    c.ok(&["app", "set", "web", "--factor", "password+otp"]);
    let app = c.json(&["app", "show", "web"]);
    assert_eq!(app["challenge_response"], true);
    assert_eq!(app["factors"].as_array().unwrap().len(), 1, "{app}");
}
