//! An OpenLDAP `slapd` with a fixture directory, on loopback ports the OS picks, over LDAP and
//! LDAPS (certificates made here with the `openssl` command). scripts/test.sh installs slapd.
//!
//! The directory (`dc=example,dc=org`):
//! - `cn=svc` — the service account (`svc-password`), may reset passwords;
//! - people: `alice` (`alice-password`, in `engineers`, which is in `vpn-users`: nested),
//!   `bob` (`bob-password`, alice's manager, in `admins`), `carol` (`carol-password`, no
//!   groups, department Sales), `dave` (`dave-password`, for password changes), `erin`
//!   (`erin-password`, also for password changes), `frank` (`frank-password`, locked by the
//!   password policy by an administrator: `pwdAccountLockedTime: 000001010000Z`), `gina`
//!   (`gina-password`, with the lock time of failed binds that has run out);
//! - a password policy: new passwords have at least 8 characters;
//! - the memberof overlay: members get `memberOf` (direct groups only).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE_DN: &str = "dc=example,dc=org";
pub const SVC_DN: &str = "cn=svc,dc=example,dc=org";
pub const SVC_PASSWORD: &str = "svc-password";

/// A running slapd; stopped and its files removed when dropped.
pub struct Slapd {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `ldap://127.0.0.1:PORT`
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:PORT`
    pub ldaps_url: String,
    /// The CA certificate (PEM) the server's certificate is signed by.
    pub ca_pem: String,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("ldap_url", &self.ldap_url)
            .finish()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find(binary: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} is missing: the README's test command (scripts/test.sh) installs slapd")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA (`ca.pem`) and a server certificate for 127.0.0.1/localhost (`server.pem`,
/// `server.key`) in `dir`, with the `openssl` command.
pub fn certificates(dir: &Path) {
    let p = |f: &str| dir.join(f).display().to_string();
    run(
        Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Tessera test LDAP CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]),
        "openssl (CA)",
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("san.ext");
    run(
        Command::new("openssl").args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]),
        "openssl (server key)",
    );
    run(
        Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("san.ext"),
            "-out",
            &p("server.pem"),
        ]),
        "openssl (server certificate)",
    );
}

const FIXTURE: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=svc,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc
userPassword: svc-password

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=policies,dc=example,dc=org
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,dc=example,dc=org
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: 8
pwdCheckQuality: 2

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob Jones
givenName: Bob
sn: Jones
mail: bob@example.org
mobile: +4915100000002
departmentNumber: IT
userPassword: bob-password

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Smith
givenName: Alice
sn: Smith
mail: alice@example.org
mobile: +4915100000001
manager: uid=bob,ou=people,dc=example,dc=org
departmentNumber: Engineering
jpegPhoto:: /9j/4AAQ
employeeType: staff
employeeType: contractor
audio:: AAEC
userPassword: alice-password

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol White
givenName: Carol
sn: White
mail: carol@example.org
departmentNumber: Sales
userPassword: carol-password

dn: uid=dave,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: dave
cn: Dave Brown
sn: Brown
mail: dave@example.org
userPassword: dave-password

dn: uid=erin,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: erin
cn: Erin Green
sn: Green
mail: erin@example.org
userPassword: erin-password

dn: uid=frank,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: frank
cn: Frank Locked
sn: Locked
userPassword: frank-password
pwdAccountLockedTime: 000001010000Z

dn: uid=gina,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: gina
cn: Gina Failed
sn: Failed
userPassword: gina-password
pwdAccountLockedTime: 20260101000000Z
";

/// Added once slapd runs, so that the memberof overlay sets the members' `memberOf`.
const GROUPS: &str = "\
dn: cn=engineers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: engineers
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=vpn-users,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: vpn-users
member: cn=engineers,ou=groups,dc=example,dc=org

dn: cn=admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=bob,ou=people,dc=example,dc=org
";

impl Slapd {
    /// Starts slapd with the fixture directory; waits until it answers.
    pub fn start() -> Slapd {
        let slapd = find("slapd");
        let slapadd = find("slapadd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        certificates(d);
        std::fs::create_dir_all(d.join("db")).expect("db dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
moduleload memberof
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
password-hash {{SSHA}}
database mdb
maxsize 33554432
suffix \"{BASE_DN}\"
rootdn \"cn=admin,{BASE_DN}\"
rootpw admin-password
directory {dir}/db
overlay memberof
overlay ppolicy
ppolicy_default \"cn=default,ou=policies,{BASE_DN}\"
access to attrs=userPassword
  by self write
  by dn.exact=\"{SVC_DN}\" write
  by anonymous auth
  by * none
access to *
  by * read
",
            dir = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("slapd.conf");
        std::fs::write(d.join("fixture.ldif"), FIXTURE).expect("fixture");
        run(
            Command::new(&slapadd)
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-l")
                .arg(d.join("fixture.ldif")),
            "slapadd",
        );
        let ca_pem = std::fs::read_to_string(d.join("ca.pem")).expect("ca.pem");
        // The ports are picked free and released before slapd binds them, so a test running
        // beside this one may take one first; slapd then exits at once, and we try new ports.
        let mut attempt = 0;
        let s = loop {
            attempt += 1;
            let (port, tls_port) = (free_port(), free_port());
            let ldap_url = format!("ldap://127.0.0.1:{port}");
            let ldaps_url = format!("ldaps://127.0.0.1:{tls_port}");
            let log = std::fs::File::create(d.join("slapd.log")).expect("log");
            let mut child = Command::new(&slapd)
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!("{ldap_url}/ {ldaps_url}/"))
                .args(["-d", "0"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("slapd starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            let exited = loop {
                let up = [port, tls_port]
                    .iter()
                    .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
                // Something answers; slapd, if it is still running a moment later (another
                // process holding the port would answer too, while slapd exits).
                if up {
                    std::thread::sleep(Duration::from_millis(100));
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        _ => break None,
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                assert!(Instant::now() < deadline, "slapd did not start within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            };
            match exited {
                None => {
                    break Slapd {
                        child,
                        dir,
                        ldap_url,
                        ldaps_url,
                        ca_pem,
                    };
                }
                Some(status) if attempt >= 5 => panic!(
                    "slapd exited ({status}) at each of {attempt} tries: {}",
                    std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
                ),
                Some(_) => continue,
            }
        };
        std::fs::write(s.dir.path().join("groups.ldif"), GROUPS).expect("groups");
        run(
            Command::new(find("ldapadd"))
                .args(["-x", "-H", &s.ldap_url, "-D"])
                .arg(format!("cn=admin,{BASE_DN}"))
                .args(["-w", "admin-password", "-f"])
                .arg(s.dir.path().join("groups.ldif")),
            "ldapadd (groups)",
        );
        s
    }

    /// What slapd logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Checks a password with `ldapwhoami` (an independent client): true when it binds.
    pub fn can_bind(&self, dn: &str, password: &str) -> bool {
        Command::new(find("ldapwhoami"))
            .args(["-x", "-H", &self.ldap_url, "-D", dn, "-w", password])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
