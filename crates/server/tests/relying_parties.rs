//! Single sign-on with relying parties as they come (issue 16, item 7), each run for real on
//! loopback: Apache with mod_auth_openidc, mod_auth_mellon and Shibboleth SP 3 (shibd and
//! mod_shib) — Debian's packages, installed by the test command — and a requests session as the
//! browser (tests/peers/rp_browser.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer, tessera_ok};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera_core::model::Method;

/// Apache httpd on 127.0.0.1 with a configuration of its own; stopped when dropped.
struct Apache {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

const MODULES: &str = "/usr/lib/apache2/modules";

impl Apache {
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    /// Starts Apache on `port` with the modules named and `site` (the rest of the
    /// configuration); `/protected/index.html` says "hello".
    fn start(port: u16, modules: &[&str], site: &str) -> Apache {
        let binary = Path::new("/usr/sbin/apache2");
        assert!(
            binary.exists(),
            "Apache is missing: the README's test command (scripts/test.sh) installs apache2 and its modules"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let htdocs = root.join("htdocs/protected");
        std::fs::create_dir_all(&htdocs).unwrap();
        std::fs::write(htdocs.join("index.html"), "hello\n").unwrap();
        // Apache's workers run as www-data when started as root: let them read the pages.
        for p in [root.to_path_buf(), root.join("htdocs"), htdocs.clone()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut conf = format!(
            "ServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {r}/httpd.pid\n\
             DefaultRuntimeDir {r}\nErrorLog {r}/error.log\nLogLevel info\n\
             DocumentRoot {r}/htdocs\n",
            r = root.display()
        );
        for m in [
            "mpm_event",
            "authz_core",
            "authn_core",
            "authz_user",
            "headers",
        ]
        .iter()
        .chain(modules)
        {
            conf.push_str(&format!(
                "LoadModule {m}_module {MODULES}/mod_{}.so\n",
                m.trim_end_matches("_module")
            ));
        }
        // Started as root, Apache hands its workers to an unprivileged user.
        if is_root() {
            conf.push_str("User www-data\nGroup www-data\n");
        }
        conf.push_str(site);
        let path = root.join("httpd.conf");
        std::fs::write(&path, conf).unwrap();
        let stderr = std::fs::File::create(root.join("stderr.log")).unwrap();
        let mut child = Command::new(binary)
            .arg("-f")
            .arg(&path)
            .arg("-DFOREGROUND")
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().ok().flatten().is_some();
            assert!(
                !exited && started.elapsed() < Duration::from_secs(15),
                "Apache did not start: {}{}",
                std::fs::read_to_string(root.join("stderr.log")).unwrap_or_default(),
                std::fs::read_to_string(root.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Apache { child, port, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// Whether this process runs as root (asked of `id`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser signing in at `start` (see tests/peers/rp_browser.py).
fn browse(start: &str) -> Value {
    browse_as(
        start,
        &json!({"username": "alice", "password": "alice-password"}),
    )
}

/// A browser signing in at `start` with `steps` (user name, password, TOTP seed).
fn browse_as(start: &str, steps: &Value) -> Value {
    common::python_peer("oauth", "rp_browser.py", &[start.to_string()], steps).remove(0)
}

/// An OIDC client of the application `intranet` made with the CLI: (client id, secret).
fn oidc_client(s: &TestServer, name: &str, redirect: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "client",
        "add",
        "api",
        name,
        "--type",
        "oidc",
        "--application",
        "intranet",
        "--redirect-uri",
        redirect,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = tessera_ok(s, &args);
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = c["client_id"].as_str().unwrap().to_string();
    // The running server picks the change up from the store.
    wait_for_config(s, |snap| snap.api_client_by_id(&id).is_some());
    (id, c["client_secret"].as_str().unwrap().to_string())
}

/// An OIDC client `name` (with `flags` for `tessera client add api`) and Apache with
/// mod_auth_openidc in front of it (`more`: further directives).
fn openidc_rp(s: &TestServer, name: &str, flags: &[&str], more: &str) -> Apache {
    let port = Apache::free_port();
    let redirect = format!("http://127.0.0.1:{port}/protected/redirect_uri");
    let (id, secret) = oidc_client(s, name, &redirect, flags);
    Apache::start(
        port,
        &["auth_openidc"],
        &openidc_site(&s.url, port, &id, &secret, more),
    )
}

/// The IdP's signing key and certificate, made by OpenSSL in `dir` and imported with the CLI.
fn import_idp_key(s: &TestServer, dir: &Path) {
    let (key, cert) = (dir.join("idp.key"), dir.join("idp.crt"));
    make_certificate(&key, &cert, "/CN=idp");
    tessera_ok(
        s,
        &[
            "saml",
            "import-key",
            key.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
    );
}

/// A self-signed RSA certificate and its key, made by OpenSSL.
fn make_certificate(key: &Path, cert: &Path, subject: &str) {
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", subject,
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

/// Waits (at most 30 s) until the running server's configuration satisfies `ready`.
fn wait_for_config(s: &TestServer, ready: impl Fn(&tessera_core::engine::Snapshot) -> bool) {
    let started = Instant::now();
    while !ready(&s.running.as_ref().unwrap().app.engine.snapshot()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the change did not reach the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn openidc_site(tessera: &str, port: u16, id: &str, secret: &str, more: &str) -> String {
    format!(
        "OIDCProviderMetadataURL {tessera}/.well-known/openid-configuration\n\
         OIDCClientID {id}\nOIDCClientSecret {secret}\n\
         OIDCRedirectURI http://127.0.0.1:{port}/protected/redirect_uri\n\
         OIDCCryptoPassphrase a-test-passphrase\nOIDCScope \"openid email profile\"\n{more}\n\
         <Location /protected/>\n  AuthType openid-connect\n  Require valid-user\n  \
         Header always set X-Claim-Email \"%{{OIDC_CLAIM_email}}e\"\n</Location>\n"
    )
}

/// mod_auth_openidc with its defaults sends no PKCE. A client that requires it (the default)
/// is refused with a reason the RP shows; with `--require-pkce false` the RP signs in with its
/// secret alone; with the RP's own PKCE (`OIDCPKCEMethod S256`) the default client works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_mod_auth_openidc_with_and_without_pkce() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;

    // 1. The default client requires PKCE; the RP's defaults send none.
    let apache = openidc_rp(&s, "apache-rp", &[], "");
    let seen = browse(&apache.url("/protected/index.html"));
    assert_ne!(seen["body"], "hello\n", "{seen}");
    // Tessera sends the RP back with the reason (RFC 6749 §4.1.2.1), which the RP shows.
    let refused = seen["trail"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|hop| hop["location"].as_str())
        .any(|l| l.contains("error=invalid_request&error_description=PKCE+with+S256+is+required"));
    assert!(refused, "{seen}");
    assert_eq!(seen["pages"], 0, "refused before any sign-in page");
    drop(apache);

    // 2. The same RP with a client that does not require PKCE: signed in with the secret.
    let apache = openidc_rp(&s, "apache-rp-2", &["--require-pkce", "false"], "");
    let seen = browse(&apache.url("/protected/index.html"));
    assert_eq!(seen["status"], 200, "{seen}\n{}", apache.log());
    assert_eq!(seen["body"], "hello\n");
    assert_eq!(seen["pages"], 1);
    assert_eq!(
        seen["headers"]["X-Claim-Email"], "alice@example.org",
        "{seen}"
    );
    drop(apache);

    // 3. The RP's own PKCE against a client that requires it.
    let apache = openidc_rp(&s, "apache-rp-3", &[], "OIDCPKCEMethod S256");
    let seen = browse(&apache.url("/protected/index.html"));
    assert_eq!(seen["status"], 200, "{seen}\n{}", apache.log());
    assert_eq!(seen["headers"]["X-Claim-Email"], "alice@example.org");
    drop(apache);
    s.stop().await;
}

/// OIDC clients are listed, shown, changed and deleted like the other clients, with the CLI
/// and the admin API; their secret (or its hash) is never shown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_managed_with_the_cli_and_the_admin_api() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let (id, _) = oidc_client(&s, "wiki", "https://wiki.example.org/cb", &[]);
    let listed: Value =
        serde_json::from_slice(&tessera_ok(&s, &["client", "list", "--json"]).stdout).unwrap();
    let wiki = listed["api_clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "wiki")
        .unwrap()
        .clone();
    assert_eq!(wiki["client_id"], id.as_str());
    assert!(wiki.get("secret_hash").is_none(), "{wiki}");
    let shown = String::from_utf8(tessera_ok(&s, &["client", "show", "wiki"]).stdout).unwrap();
    assert!(
        shown.contains("required (S256)") && shown.contains(&id),
        "{shown}"
    );
    let set = tessera_ok(
        &s,
        &[
            "client",
            "set",
            "wiki",
            "--require-pkce",
            "false",
            "--redirect-uri",
            "https://wiki.example.org/oidc",
            "--json",
        ],
    );
    let changed: Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(changed["require_pkce"], false);
    assert_eq!(
        changed["redirect_uris"],
        json!(["https://wiki.example.org/oidc"])
    );
    assert_eq!(changed["client_id"], id.as_str(), "the client id stays");
    let wrong = common::tessera(&s, &["client", "set", "wiki", "--nas-ip", "10.0.0.1"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("--nas-ip is for RADIUS clients"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // The admin API.
    let admin = s
        .admin_token("ops", tessera_core::model::AdminRole::Admin)
        .await;
    let api = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let (s, admin) = (&s, admin.clone());
        let path = path.to_string();
        async move {
            let mut req = s
                .http
                .request(method, format!("{}/api/v1{path}", s.url))
                .bearer_auth(admin);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, created) = api(
        reqwest::Method::POST,
        "/api-clients",
        Some(
            json!({"name": "portal", "type": "oidc", "application": "intranet",
                    "redirect_uris": ["https://portal.example.org/cb"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["client_secret"].as_str().unwrap().len() >= 32);
    assert!(created["api_client"].get("secret_hash").is_none());
    let (status, list) = api(reqwest::Method::GET, "/api-clients", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["api_clients"].as_array().unwrap().len(), 2);
    let (status, patched) = api(
        reqwest::Method::PATCH,
        "/api-clients/portal",
        Some(json!({"require_pkce": false, "post_logout_redirect_uris": ["https://portal.example.org/"]})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["require_pkce"], false);
    // A bad change is refused whole.
    let (status, refused) = api(
        reqwest::Method::PATCH,
        "/api-clients/portal",
        Some(json!({"redirect_uris": ["ftp://portal.example.org/cb"], "description": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (_, now) = api(reqwest::Method::GET, "/api-clients/portal", None).await;
    assert_eq!(
        now["redirect_uris"],
        json!(["https://portal.example.org/cb"])
    );
    assert!(now.get("description").is_none(), "{now}");
    let (status, _) = api(reqwest::Method::DELETE, "/api-clients/portal", None).await;
    assert_eq!(status, 200);
    let (status, _) = api(reqwest::Method::GET, "/api-clients/portal", None).await;
    assert_eq!(status, 404);
    tessera_ok(&s, &["client", "delete", "wiki"]);
    assert!(
        !common::tessera(&s, &["client", "show", "wiki"])
            .status
            .success()
    );
    s.stop().await;
}

/// Apache mod_auth_mellon with the metadata its own script makes (no NameIDFormat in it) asks
/// for a transient NameID: served, where the SP registered as `unspecified` used to be refused
/// before any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_mod_auth_mellon_gets_the_name_id_it_asks_for() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The IdP's key, made by OpenSSL.
    import_idp_key(&s, dir);
    // The SP's key, certificate and metadata, by mellon's own script.
    let port = Apache::free_port();
    let sp = format!("http://127.0.0.1:{port}/mellon");
    let made = Command::new("/usr/sbin/mellon_create_metadata")
        .args([&format!("{sp}/metadata"), &sp])
        .current_dir(dir)
        .output()
        .expect(
            "mellon_create_metadata (libapache2-mod-auth-mellon) is installed by scripts/test.sh",
        );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let prefix = dir.join(format!("http_127.0.0.1_{port}_mellon_metadata"));
    let file = |ext: &str| format!("{}.{ext}", prefix.display());
    assert!(
        !std::fs::read_to_string(file("xml"))
            .unwrap()
            .contains("NameIDFormat")
    );
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "mellon",
            "--application",
            "intranet",
            "--metadata",
            &file("xml"),
        ],
    );
    let shown: Value =
        serde_json::from_slice(&tessera_ok(&s, &["saml", "sp", "show", "mellon", "--json"]).stdout)
            .unwrap();
    assert_eq!(shown["name_id_format_as_asked"], true, "{shown}");
    // Wait until the running server has the SP.
    wait_for_config(&s, |snap| snap.saml_sps.contains_key("mellon"));
    let idp_meta = dir.join("idp.xml");
    let meta = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&idp_meta, meta).unwrap();
    // Apache's workers (www-data when started as root) read the SP's files.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in [file("key"), file("cert"), file("xml")] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let site = format!(
        "<Location />\n  MellonEnable info\n  MellonEndpointPath /mellon\n  \
         MellonSPPrivateKeyFile {}\n  MellonSPCertFile {}\n  MellonSPMetadataFile {}\n  \
         MellonIdPMetadataFile {}\n  MellonSecureCookie Off\n</Location>\n\
         <Location /protected/>\n  AuthType Mellon\n  MellonEnable auth\n  Require valid-user\n  \
         Header always set X-Name-Id \"%{{MELLON_NAME_ID}}e\"\n</Location>\n",
        file("key"),
        file("cert"),
        file("xml"),
        idp_meta.display()
    );
    let apache = Apache::start(port, &["auth_mellon"], &site);
    let seen = browse(&apache.url("/protected/index.html"));
    assert_eq!(seen["status"], 200, "{seen}\n{}", apache.log());
    assert_eq!(seen["body"], "hello\n");
    let name_id = seen["headers"]["X-Name-Id"].as_str().unwrap();
    assert!(
        name_id.starts_with('_') && name_id != "alice",
        "a transient NameID: {name_id}"
    );
    // Registered for one format by the administrator, the SP's request for another is refused.
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "set",
            "mellon",
            "--name-id-format",
            "persistent",
        ],
    );
    wait_for_config(&s, |snap| {
        snap.saml_sps
            .get("mellon")
            .is_some_and(|sp| !sp.name_id_format_as_asked)
    });
    let seen = browse(&apache.url("/protected/index.html"));
    assert_ne!(seen["body"], "hello\n", "{seen}");
    assert_eq!(seen["pages"], 0, "refused before any page: {seen}");
    drop(apache);
    s.stop().await;
}

/// SP metadata read from an HTTPS address whose certificate a private CA issued (`--ca-file`),
/// served by `openssl s_server`: refused without the CA, read with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sp_metadata_from_https_with_a_private_ca() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    tessera_testkit::slapd::certificates(dir);
    std::fs::write(
        dir.join("sp.xml"),
        r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example.org/metadata">
  <SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/>
  </SPSSODescriptor>
</EntityDescriptor>
"#,
    )
    .unwrap();
    let port = Apache::free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "server.pem", "-key", "server.key"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.0.0.1:{port}/sp.xml");
    let add = |extra: &[&str]| {
        let mut args = vec![
            "saml",
            "sp",
            "add",
            "private",
            "--application",
            "intranet",
            "--metadata-url",
            &url,
        ];
        args.extend_from_slice(extra);
        common::tessera(&s, &args)
    };
    // Without the CA the address's certificate is not trusted.
    let refused = add(&[]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains(&format!("reading {url}")), "{why}");
    assert!(
        !common::tessera(&s, &["saml", "sp", "show", "private"])
            .status
            .success(),
        "nothing registered"
    );
    let ca = dir.join("ca.pem").display().to_string();
    let added = add(&["--ca-file", &ca]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let shown: Value = serde_json::from_slice(
        &tessera_ok(&s, &["saml", "sp", "show", "private", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(shown["entity_id"], "https://sp.example.org/metadata");
    assert!(
        shown["metadata_ca_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let _ = server.kill();
    let _ = server.wait();
    s.stop().await;
}

/// shibd on loopback with a configuration of its own (TCP listener, memory storage, logs in
/// its directory); stopped when dropped.
struct Shibd {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Shibd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shibd {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("shibd.log")).unwrap_or_default()
    }
}

/// Debian's attribute map with its LDAP and eduPerson blocks uncommented, as an administrator
/// does to receive mail, uid, givenName, sn, displayName and isMemberOf (`member`).
fn shibboleth_attribute_map() -> String {
    let mut map = std::fs::read_to_string("/etc/shibboleth/attribute-map.xml").expect(
        "/etc/shibboleth/attribute-map.xml (libapache2-mod-shib) is installed by scripts/test.sh",
    );
    for block in [
        "<!-- Other eduPerson attributes",
        "<!-- Older LDAP-defined attributes",
    ] {
        let at = map
            .find(block)
            .unwrap_or_else(|| panic!("{block} not in the map"));
        let header_end = at + map[at..].find("-->").unwrap() + 3;
        let open = header_end + map[header_end..].find("<!--").unwrap();
        map.replace_range(open..open + 4, "");
        let close = open + map[open..].find("-->").unwrap();
        map.replace_range(close..close + 3, "");
    }
    map
}

/// Starts shibd for the SP `entity` in front of Tessera's IdP (`idp_entity`, its metadata in
/// `idp_meta`); the same configuration serves mod_shib (`ShibConfig`).
fn start_shibd(dir: &Path, entity: &str, idp_entity: &str, idp_meta: &Path) -> (Shibd, String) {
    let binary = Path::new("/usr/sbin/shibd");
    assert!(
        binary.exists(),
        "shibd is missing: the README's test command (scripts/test.sh) installs libapache2-mod-shib"
    );
    let d = dir.display();
    let port = Apache::free_port();
    make_certificate(&dir.join("sp-key.pem"), &dir.join("sp-cert.pem"), "/CN=sp");
    for (name, file) in [("shibd", "shibd.log"), ("native", "native.log")] {
        std::fs::write(
            dir.join(format!("{name}.logger")),
            format!(
                "log4j.rootCategory=INFO, f\nlog4j.appender.f=org.apache.log4j.FileAppender\n\
                 log4j.appender.f.fileName={d}/{file}\n\
                 log4j.appender.f.layout=org.apache.log4j.PatternLayout\n\
                 log4j.appender.f.layout.ConversionPattern=%d %p %c: %m%n\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(dir.join("attribute-map.xml"), shibboleth_attribute_map()).unwrap();
    let config = format!(
        r#"<SPConfig xmlns="urn:mace:shibboleth:3.0:native:sp:config" xmlns:conf="urn:mace:shibboleth:3.0:native:sp:config" clockSkew="180">
  <OutOfProcess logger="{d}/shibd.logger"/>
  <InProcess logger="{d}/native.logger"/>
  <TCPListener address="127.0.0.1" port="{port}" acl="127.0.0.1"/>
  <StorageService type="Memory" id="mem" cleanupInterval="900"/>
  <SessionCache type="StorageService" StorageService="mem" cacheAssertions="false" cacheAllowance="900" inprocTimeout="900" cleanupInterval="900"/>
  <ReplayCache StorageService="mem"/>
  <ApplicationDefaults entityID="{entity}" REMOTE_USER="eppn uid">
    <Sessions lifetime="28800" timeout="3600" relayState="ss:mem" checkAddress="false" handlerSSL="false" cookieProps="http" redirectLimit="exact">
      <SSO entityID="{idp_entity}">SAML2</SSO>
      <Logout>SAML2 Local</Logout>
      <Handler type="MetadataGenerator" Location="/Metadata" signing="false"/>
      <Handler type="Session" Location="/Session" showAttributeValues="true"/>
    </Sessions>
    <Errors supportContact="root@localhost" styleSheet="/shibboleth-sp/main.css"/>
    <MetadataProvider type="XML" validate="true" path="{meta}"/>
    <AttributeExtractor type="XML" validate="true" reloadChanges="false" path="{d}/attribute-map.xml"/>
    <AttributeFilter type="XML" validate="true" path="/etc/shibboleth/attribute-policy.xml"/>
    <CredentialResolver type="File" key="{d}/sp-key.pem" certificate="{d}/sp-cert.pem"/>
  </ApplicationDefaults>
  <SecurityPolicyProvider type="XML" validate="true" path="/etc/shibboleth/security-policy.xml"/>
  <ProtocolProvider type="XML" validate="true" reloadChanges="false" path="/etc/shibboleth/protocols.xml"/>
</SPConfig>
"#,
        meta = idp_meta.display()
    );
    let path = dir.join("shibboleth2.xml");
    std::fs::write(&path, config).unwrap();
    // mod_shib in Apache's workers (www-data when started as root) reads the configuration and
    // writes its log; the key stays shibd's.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in [
            "shibboleth2.xml",
            "native.logger",
            "attribute-map.xml",
            "sp-cert.pem",
        ] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(dir.join("native.log"), "").unwrap();
        std::fs::set_permissions(
            dir.join("native.log"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::fs::set_permissions(idp_meta, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let stderr = std::fs::File::create(dir.join("shibd.stderr")).unwrap();
    let mut child = Command::new(binary)
        .args(["-f", "-F", "-c"])
        .arg(&path)
        .arg("-p")
        .arg(dir.join("shibd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = child.try_wait().ok().flatten().is_some();
        assert!(
            !exited && started.elapsed() < Duration::from_secs(30),
            "shibd did not start: {}{}",
            std::fs::read_to_string(dir.join("shibd.stderr")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("shibd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        Shibd {
            child,
            dir: dir.to_path_buf(),
        },
        path.display().to_string(),
    )
}

const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";

/// Shibboleth SP 3 with Debian's attribute map (its standard blocks uncommented) and its
/// attribute policy: the standard attributes arrive under their OID names, eduPersonPrincipalName
/// passes the policy's scope check against the `<shibmd:Scope>` of Tessera's metadata, a location
/// asking for REFEDS MFA gets it after a password and a code, and a user who passed with the
/// password alone (no token yet, pass_on_no_token) is refused with NoAuthnContext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shibboleth_sp_gets_the_attributes_and_the_mfa_context() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url, "saml_scope": "example.org"}))
        .await;
    s.add_user("alice", Some("alice-password")).await;
    s.add_user("bob", Some("bob-password")).await;
    s.enroll(
        "alice",
        tessera_core::model::TokenKind::Totp,
        "TOTP0061",
        None,
    )
    .await;
    s.use_app("intranet", &[&[Method::Password], &[Method::SoftOtp]])
        .await;
    tessera_ok(
        &s,
        &["app", "set", "intranet", "--pass-on-no-token", "true"],
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    import_idp_key(&s, dir);
    wait_for_config(&s, |snap| snap.settings.saml_scope == "example.org");
    let idp_meta = dir.join("idp.xml");
    let meta = reqwest::get(format!("{}/saml/metadata", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(meta.contains("example.org</shibmd:Scope>"), "{meta}");
    std::fs::write(&idp_meta, meta).unwrap();
    let port = Apache::free_port();
    let entity = format!("http://127.0.0.1:{port}/shibboleth");
    let shib_dir = dir.join("shib");
    std::fs::create_dir_all(&shib_dir).unwrap();
    let (shibd, config) = start_shibd(
        &shib_dir,
        &entity,
        &format!("{}/saml/metadata", s.url),
        &idp_meta,
    );
    let headers: String = [
        "eppn",
        "uid",
        "mail",
        "givenName",
        "sn",
        "displayName",
        "member",
        "Shib-AuthnContext-Class",
    ]
    .iter()
    .map(|a| format!("  Header always set X-{a} \"%{{{a}}}e\"\n"))
    .collect();
    let site = format!(
        "LoadModule mod_shib /usr/lib/apache2/modules/mod_shib.so\nShibConfig {config}\n\
         <Location /Shibboleth.sso>\n  SetHandler shib\n</Location>\n\
         <Location /protected/>\n  AuthType shibboleth\n  ShibRequestSetting requireSession 1\n  \
         Require shib-session\n{headers}</Location>\n\
         <Location /mfa/>\n  AuthType shibboleth\n  ShibRequestSetting requireSession 1\n  \
         ShibRequestSetting authnContextClassRef {REFEDS_MFA}\n  Require shib-session\n{headers}</Location>\n"
    );
    let apache = Apache::start(port, &[], &site);
    std::fs::create_dir_all(apache.dir.path().join("htdocs/mfa")).unwrap();
    std::fs::write(apache.dir.path().join("htdocs/mfa/index.html"), "strong\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            apache.dir.path().join("htdocs/mfa"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    // The SP is registered from the metadata shibd publishes.
    tessera_ok(
        &s,
        &[
            "saml",
            "sp",
            "add",
            "shibboleth",
            "--application",
            "intranet",
            "--metadata-url",
            &apache.url("/Shibboleth.sso/Metadata"),
        ],
    );
    wait_for_config(&s, |snap| snap.saml_sps.contains_key("shibboleth"));
    let logs = || format!("{}\n{}", apache.log(), shibd.log());

    // Alice signs in with her password and a code; the same browser then opens a location
    // that asks for REFEDS MFA (Tessera's SSO session answers).
    let alice = json!({"username": "alice", "password": "alice-password",
                       "totp_seed_b32": common::SEED_B32,
                       "then": [apache.url("/mfa/index.html")]});
    let seen = browse_as(&apache.url("/protected/index.html"), &alice);
    assert_eq!(seen["status"], 200, "{seen}\n{}", logs());
    assert_eq!(seen["body"], "hello\n");
    let h = &seen["headers"];
    assert_eq!(h["X-eppn"], "alice@example.org", "{h}\n{}", logs());
    assert_eq!(h["X-uid"], "alice", "{h}");
    assert_eq!(h["X-mail"], "alice@example.org", "{h}");
    assert_eq!(h["X-givenName"], "Given", "{h}");
    assert_eq!(h["X-sn"], "Sur", "{h}");
    assert_eq!(h["X-displayName"], "Given Sur", "{h}");
    assert_eq!(h["X-member"], "staff", "{h}");
    assert_eq!(h["X-Shib-AuthnContext-Class"], REFEDS_MFA, "{h}");
    // The location that asks for REFEDS MFA: met by a password and a code.
    let seen = &seen["then"][0];
    assert_eq!(seen["status"], 200, "{seen}\n{}", logs());
    assert_eq!(seen["body"], "strong\n");
    assert_eq!(seen["headers"]["X-Shib-AuthnContext-Class"], REFEDS_MFA);
    // Bob has no token yet: the password lets him in where nothing more is asked (named as
    // password-protected transport), not where MFA is.
    let bob = json!({"username": "bob", "password": "bob-password"});
    let seen = browse_as(&apache.url("/protected/index.html"), &bob);
    assert_eq!(seen["status"], 200, "{seen}\n{}", logs());
    assert_eq!(
        seen["headers"]["X-Shib-AuthnContext-Class"],
        "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    );
    assert_eq!(seen["headers"]["X-uid"], "bob");
    let seen = browse_as(&apache.url("/mfa/index.html"), &bob);
    assert_ne!(seen["status"], 200, "{seen}");
    let body = seen["body"].as_str().unwrap();
    assert!(body.contains("NoAuthnContext"), "{body}\n{}", logs());
    assert!(body.contains("a single kind of factor"), "{body}");
    assert_ne!(body, "strong\n");
    drop(apache);
    drop(shibd);
    s.stop().await;
}

/// A public client (no secret: PKCE, always) behind Apache mod_auth_openidc configured as the
/// module documents it for public clients (`OIDCProviderTokenEndpointAuth none`), asking for
/// `offline_access`: its refresh tokens are used (and renewed) at each request, a copied one
/// presented again revokes them all; and a session ended by the CLI reaches the module by
/// back-channel logout, sent by the running server over HTTPS with the client's own CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_mod_auth_openidc_as_a_public_client_with_refresh_and_backchannel_logout() {
    let s = TestServer::start(Backend::Sqlite, None).await;
    s.set(json!({"public_url": s.url})).await;
    s.add_user("alice", Some("alice-password")).await;
    s.use_app("intranet", &[&[Method::Password]]).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    tessera_testkit::slapd::certificates(dir);
    let ca = dir.join("ca.pem").display().to_string();

    // Public clients are OIDC clients that require PKCE.
    for (flags, why) in [
        (
            vec!["--type", "oidc", "--require-pkce", "false"],
            "PKCE is what proves its codes",
        ),
        (vec!["--type", "agent"], "only OIDC clients may be public"),
    ] {
        let mut args = vec!["client", "add", "api", "not-public", "--public"];
        args.extend(flags);
        args.extend(["--redirect-uri", "http://127.0.0.1:9/cb"]);
        let refused = common::tessera(&s, &args);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(why), "{err}");
    }

    let port = Apache::free_port();
    let ssl_port = Apache::free_port();
    let out = tessera_ok(
        &s,
        &[
            "client",
            "add",
            "api",
            "spa",
            "--type",
            "oidc",
            "--public",
            "--application",
            "intranet",
            "--token-lifetime",
            "60",
            "--redirect-uri",
            &format!("http://127.0.0.1:{port}/protected/redirect_uri"),
            "--backchannel-logout-uri",
            &format!("https://127.0.0.1:{ssl_port}/protected/redirect_uri?logout=backchannel"),
            "--backchannel-ca-file",
            &ca,
            "--json",
        ],
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["client_secret"], Value::Null, "{created}");
    assert_eq!(created["public"], true);
    let id = created["client_id"].as_str().unwrap().to_string();
    wait_for_config(&s, |snap| snap.api_client_by_id(&id).is_some());

    let site = format!(
        "Listen 127.0.0.1:{ssl_port}\n\
         OIDCProviderMetadataURL {tessera}/.well-known/openid-configuration\n\
         OIDCClientID {id}\nOIDCProviderTokenEndpointAuth none\nOIDCPKCEMethod S256\n\
         OIDCRedirectURI /protected/redirect_uri\nOIDCCryptoPassphrase a-test-passphrase\n\
         OIDCScope \"openid email offline_access\"\n\
         OIDCRefreshAccessTokenBeforeExpiry 3600\nOIDCPassRefreshToken On\n\
         <VirtualHost 127.0.0.1:{ssl_port}>\n  SSLEngine on\n  \
         SSLCertificateFile {d}/server.pem\n  SSLCertificateKeyFile {d}/server.key\n</VirtualHost>\n\
         <Location /protected/>\n  AuthType openid-connect\n  Require valid-user\n  \
         Header always set X-Access-Token \"%{{OIDC_access_token}}e\"\n  \
         Header always set X-Refresh-Token \"%{{OIDC_refresh_token}}e\"\n</Location>\n",
        tessera = s.url,
        d = dir.display()
    );
    let apache = Apache::start(port, &["auth_openidc", "ssl"], &site);
    let page = apache.url("/protected/index.html");
    let end_session = vec![
        env!("CARGO_BIN_EXE_tessera").to_string(),
        "session".into(),
        "end".into(),
        "alice".into(),
        "--data-dir".into(),
        s.config.data_dir.display().to_string(),
    ];
    let seen = browse_as(
        &page,
        &json!({"username": "alice", "password": "alice-password",
                "then": [page, {"run": end_session}, {"sleep": 4}, page]}),
    );
    let logs = || apache.log();
    assert_eq!(seen["status"], 200, "{seen}\n{}", logs());
    assert_eq!(seen["pages"], 1);
    let token = |v: &Value, h: &str| v["headers"][h].as_str().unwrap_or_default().to_string();
    let (access1, refresh1) = (
        token(&seen, "X-Access-Token"),
        token(&seen, "X-Refresh-Token"),
    );
    assert!(access1.starts_with("ey"), "{seen}");
    assert!(refresh1.len() >= 20 && refresh1 != "(null)", "{seen}");
    // The next request: the module refreshed the (short-lived) access token with its refresh
    // token, and got a new refresh token.
    let again = &seen["then"][0];
    assert_eq!(again["status"], 200, "{again}\n{}", logs());
    assert_eq!(again["pages"], 0);
    let (access2, refresh2) = (
        token(again, "X-Access-Token"),
        token(again, "X-Refresh-Token"),
    );
    assert_ne!(access2, access1, "refreshed\n{}", logs());
    assert!(refresh2.len() >= 20 && refresh2 != refresh1, "{again}");
    // The administrator ends the SSO session with the CLI; the running server tells the
    // module (HTTPS, the client's CA), which ends its own session: the next visit signs in
    // again.
    let ended = &seen["then"][1];
    assert_eq!(ended["exit"], 0, "{ended}");
    let told = s.audit("oidc_backchannel_logout").await;
    assert_eq!(told.len(), 1, "{told:?}\n{}", logs());
    assert_eq!(told[0].result, "ok", "{told:?}");
    assert!(
        told[0]
            .reason
            .contains(&format!("https://127.0.0.1:{ssl_port}/")),
        "{told:?}"
    );
    let after = &seen["then"][3];
    assert_eq!(after["status"], 200, "{after}\n{}", logs());
    assert_eq!(
        after["pages"], 1,
        "signed in again after the back-channel logout: {after}"
    );
    let refresh3 = token(after, "X-Refresh-Token");
    assert!(refresh3.len() >= 20, "{after}");

    // A copied refresh token presented again (as a thief would): refused, and every refresh
    // token of the client for the user goes with it.
    let http = reqwest::Client::new();
    let refresh = |rt: String| {
        let http = http.clone();
        let url = format!("{}/oauth/token", s.url);
        let id = id.clone();
        async move {
            let res = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", id.as_str()),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = refresh(refresh1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let reused = s.audit("refresh_token_reused").await;
    assert_eq!(reused.len(), 1, "{reused:?}");
    assert_eq!(reused[0].user.as_deref(), Some("alice"));
    let (status, body) = refresh(refresh3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the live refresh token was revoked with the copy"
    );
    // Without a secret only a public client is heard; with one, a public client is not.
    let other = oidc_client(&s, "confidential", "http://127.0.0.1:9/cb", &[]);
    let res = http
        .post(format!("{}/oauth/token", s.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", other.0.as_str()),
            ("refresh_token", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(format!("{}/oauth/token", s.url))
        .basic_auth(&id, Some("guessed"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    drop(apache);
    s.stop().await;
}
