//! The LDAP user source against a real OpenLDAP slapd (tessera-testkit's fixture directory):
//! lookup, attribute mapping, nested groups, binds, injection attempts, LDAPS and StartTLS with
//! a pinned CA, failover, a directory that is down, and password changes with the Password
//! Modify operation under a password policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::{Duration, Instant};
use tessera_core::model::UserSourceDef;
use tessera_core::source::{PasswordChangeError, SourceError, UserSource};
use tessera_directory::LdapSource;
use tessera_testkit::slapd::{BASE_DN, SVC_DN, SVC_PASSWORD, Slapd};

fn source(ldap: serde_json::Value) -> LdapSource {
    let def: UserSourceDef =
        serde_json::from_value(json!({"name": "corp", "type": "ldap", "ldap": ldap})).unwrap();
    LdapSource::new(&def).unwrap()
}

fn profile(servers: &[&str]) -> serde_json::Value {
    json!({
        "directory": "openldap",
        "servers": servers,
        "base_dn": BASE_DN,
        "bind_dn": SVC_DN,
        "bind_password": SVC_PASSWORD,
        "attributes": {"extra": ["departmentNumber", "jpegPhoto", "audio"]},
        "timeout_seconds": 2,
    })
}

#[tokio::test]
async fn finds_users_with_mapped_attributes_and_nested_groups() {
    let d = Slapd::start();
    let s = source(profile(&[&d.ldap_url]));
    let alice = s.find("alice").await.unwrap().expect("alice");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.given_name.as_deref(), Some("Alice"));
    assert_eq!(alice.surname.as_deref(), Some("Smith"));
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.phone.as_deref(), Some("+4915100000001"));
    assert_eq!(
        alice.manager.as_deref(),
        Some("bob"),
        "manager DN resolved to a login"
    );
    assert_eq!(
        alice.groups,
        ["engineers", "vpn-users"],
        "nested group included"
    );
    assert_eq!(alice.attributes["departmentnumber"], ["Engineering"]);
    // A binary value (not UTF-8) in base64, as ldapsearch shows it.
    assert_eq!(alice.attributes["jpegphoto"], ["/9j/4AAQ"]);
    // UTF-8, but control characters (bytes 0, 1, 2): no text either.
    assert_eq!(alice.attributes["audio"], ["AAEC"]);
    assert_eq!(
        alice.attributes["dn"],
        [format!("uid=alice,ou=people,{BASE_DN}")]
    );
    // entryUUID is the stable id, and finds the same user again.
    assert_eq!(alice.id.0.len(), 36, "{}", alice.id);
    let again = s.get(&alice.id).await.unwrap().expect("by id");
    assert_eq!(again, alice);
    // Case-insensitive, as directories compare uid.
    assert_eq!(s.find("ALICE").await.unwrap().unwrap().id, alice.id);
    assert!(s.find("nobody").await.unwrap().is_none());
    assert!(alice.enabled);
    // Locked by the directory's password policy: found, but not active.
    let frank = s.find("frank").await.unwrap().expect("frank");
    assert!(!frank.enabled);
    // A lock for failed binds ends by itself; the directory decides at the next bind.
    let gina = s.find("gina").await.unwrap().expect("gina");
    assert!(gina.enabled);

    // memberOf (the memberof overlay here, AD's own attribute there): the direct groups.
    let mut p = profile(&[&d.ldap_url]);
    p["groups"] = json!({"mode": "member_of"});
    let by_attr = source(p).find("alice").await.unwrap().unwrap();
    assert_eq!(by_attr.groups, ["engineers"]);
    assert_eq!(
        by_attr.attributes["memberof"],
        [format!("cn=engineers,ou=groups,{BASE_DN}")]
    );
    let mut p = profile(&[&d.ldap_url]);
    p["groups"] = json!({"mode": "none"});
    assert!(
        source(p)
            .find("alice")
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );

    // Without nesting only the direct group.
    let mut p = profile(&[&d.ldap_url]);
    p["groups"] = json!({"nested": false});
    let flat = source(p).find("alice").await.unwrap().unwrap();
    assert_eq!(flat.groups, ["engineers"]);
}

#[tokio::test]
async fn passwords_are_checked_by_binding_as_the_user() {
    let d = Slapd::start();
    let s = source(profile(&[&d.ldap_url]));
    let alice = s.find("alice").await.unwrap().unwrap();
    assert!(s.verify_password(&alice, "alice-password").await.unwrap());
    assert!(!s.verify_password(&alice, "wrong").await.unwrap());
    // An empty password would be an anonymous bind, which slapd accepts: never tried.
    assert!(!s.verify_password(&alice, "").await.unwrap());
    // Binds on the pooled connections do not mix users up.
    let bob = s.find("bob").await.unwrap().unwrap();
    assert!(s.verify_password(&bob, "bob-password").await.unwrap());
    assert!(!s.verify_password(&bob, "alice-password").await.unwrap());
    assert!(s.verify_password(&alice, "alice-password").await.unwrap());
}

#[tokio::test]
async fn injection_attempts_find_nobody() {
    let d = Slapd::start();
    let s = source(profile(&[&d.ldap_url]));
    for login in [
        "*",
        "a*",
        "*)(uid=*",
        "alice)(|(uid=*",
        "alice\0",
        "\0",
        "alice)",
        "(uid=alice)",
        "\\2a",
        "",
    ] {
        assert!(
            s.find(login).await.unwrap().is_none(),
            "{login:?} found someone"
        );
    }
    let long = "a".repeat(300);
    assert!(s.find(&long).await.unwrap().is_none());
    // The directory is unchanged and still answers.
    assert!(s.find("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn ldaps_and_starttls_with_a_pinned_ca() {
    let d = Slapd::start();
    let mut p = profile(&[&d.ldaps_url]);
    p["ca_pem"] = json!(d.ca_pem);
    let s = source(p);
    let alice = s.find("alice").await.unwrap().expect("over LDAPS");
    assert!(s.verify_password(&alice, "alice-password").await.unwrap());

    let mut p = profile(&[&d.ldap_url]);
    p["starttls"] = json!(true);
    p["ca_pem"] = json!(d.ca_pem);
    assert!(source(p).find("alice").await.unwrap().is_some(), "StartTLS");

    // A CA that did not sign the server's certificate: refused, with the reason.
    let other = Slapd::start();
    let mut p = profile(&[&d.ldaps_url]);
    p["ca_pem"] = json!(other.ca_pem);
    match source(p).find("alice").await {
        Err(SourceError::Unavailable { detail, .. }) => {
            assert!(detail.to_lowercase().contains("certificate"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // The system's roots do not know the test CA either.
    match source(profile(&[&d.ldaps_url])).find("alice").await {
        Err(SourceError::Unavailable { .. }) => {}
        other => panic!("{other:?}"),
    }
    // The explicit opt-out.
    let mut p = profile(&[&d.ldaps_url]);
    p["insecure_skip_verify"] = json!(true);
    assert!(source(p).find("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn failover_and_a_directory_that_is_down() {
    let d = Slapd::start();
    // A port nobody listens on, then the real server.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ldap://{}", l.local_addr().unwrap())
    };
    let s = source(profile(&[&dead, &d.ldap_url]));
    assert!(s.find("alice").await.unwrap().is_some());

    // A server that accepts connections and never answers: the timeout (2 s) decides.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("ldap://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((sock, _)) = silent.accept().await {
                held.push(sock);
            }
        }
    });
    let s = source(profile(&[&silent_url]));
    let started = Instant::now();
    match s.find("alice").await {
        Err(SourceError::Unavailable { detail, .. }) => {
            assert!(detail.contains(&silent_url), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    hold.abort();

    // Wrong service account password: unavailable, saying so.
    let mut p = profile(&[&d.ldap_url]);
    p["bind_password"] = json!("wrong");
    match source(p).find("alice").await {
        Err(SourceError::Unavailable { detail, .. }) => {
            assert!(detail.contains("invalid credentials"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn password_changes_with_password_modify() {
    let d = Slapd::start();
    let s = source(profile(&[&d.ldap_url]));
    let dave = s.find("dave").await.unwrap().unwrap();
    let dave_dn = format!("uid=dave,ou=people,{BASE_DN}");
    // The user's own change needs the current password.
    assert_eq!(
        s.change_password(&dave, Some("wrong"), "new-dave-pass")
            .await,
        Err(PasswordChangeError::WrongOldPassword)
    );
    // The password policy (at least 8 characters) speaks through.
    match s
        .change_password(&dave, Some("dave-password"), "short")
        .await
    {
        Err(PasswordChangeError::PolicyViolation(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(d.can_bind(&dave_dn, "dave-password"), "nothing changed");
    s.change_password(&dave, Some("dave-password"), "new-dave-pass")
        .await
        .unwrap();
    assert!(
        d.can_bind(&dave_dn, "new-dave-pass"),
        "ldapwhoami with the new one"
    );
    assert!(!d.can_bind(&dave_dn, "dave-password"));
    assert!(s.verify_password(&dave, "new-dave-pass").await.unwrap());

    // An administrator's reset through the service account.
    let erin = s.find("erin").await.unwrap().unwrap();
    s.change_password(&erin, None, "reset-erin-pass")
        .await
        .unwrap();
    assert!(d.can_bind(&format!("uid=erin,ou=people,{BASE_DN}"), "reset-erin-pass"));

    // Without a service account there is no reset.
    let mut p = profile(&[&d.ldap_url]);
    p.as_object_mut().unwrap().remove("bind_dn");
    p.as_object_mut().unwrap().remove("bind_password");
    let anon = source(p);
    let erin = anon.find("erin").await.unwrap().unwrap();
    assert!(matches!(
        anon.change_password(&erin, None, "another-pass").await,
        Err(PasswordChangeError::NotSupported(_))
    ));
}

#[tokio::test]
async fn the_test_report_names_each_server() {
    let d = Slapd::start();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ldap://{}", l.local_addr().unwrap())
    };
    let s = source(profile(&[&dead, &d.ldap_url]));
    let r = s.test(Some("alice")).await;
    assert!(r.servers[0].1.is_err());
    assert!(r.servers[1].1.is_ok());
    assert_eq!(r.user.unwrap().unwrap().unwrap().username, "alice");
}
