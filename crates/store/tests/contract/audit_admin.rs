//! AuditStore and AdminStore: the audit trail, administrators and their sessions.

use super::*;

contract!(audit_append_and_query, admins_and_sessions,);

async fn audit_append_and_query(h: &Harness) {
    let s = &h.store;
    for i in 0..5 {
        s.append_audit(&AuditRecord {
            at_ms: 1000 + i,
            actor: "user".into(),
            action: "authenticate".into(),
            door: "validate".into(),
            user: Some(if i % 2 == 0 { "Alice" } else { "bob" }.into()),
            serial: Some(format!("S{i}")),
            result: if i == 4 { "accept" } else { "reject" }.into(),
            reason: "x".repeat(3000),
            client_ip: Some("10.0.0.1".into()),
            ..AuditRecord::default()
        })
        .await
        .unwrap();
    }
    let all = s.query_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all[0].id > all[4].id, "newest first");
    assert_eq!(all[0].reason.len(), 2000, "reason clipped");
    let alice = s
        .query_audit(&AuditQuery {
            user: Some("alice".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 3);
    let accepted = s
        .query_audit(&AuditQuery {
            result: Some("accept".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].serial.as_deref(), Some("S4"));
    let page = s
        .query_audit(&AuditQuery {
            limit: Some(2),
            before_id: Some(all[1].id),
            since_ms: Some(1001),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, all[2].id);
}

async fn admins_and_sessions(h: &Harness) {
    let s = &h.store;
    let a = AdminAccount {
        name: "root".into(),
        password_hash: "$argon2id$x".into(),
        role: AdminRole::Admin,
        enabled: true,
        created_at: 1,
    };
    s.create_admin(&a).await.unwrap();
    assert!(matches!(
        s.create_admin(&a).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.admin("root").await.unwrap(), Some(a.clone()));
    assert!(
        s.update_admin_password("root", "$argon2id$y")
            .await
            .unwrap()
    );
    assert_eq!(
        s.list_admins().await.unwrap()[0].password_hash,
        "$argon2id$y"
    );
    let sess = AdminSession {
        token_hash: "abc".into(),
        admin: "root".into(),
        role: AdminRole::Admin,
        created_at: 1,
        expires_at: 100,
    };
    s.create_session(&sess).await.unwrap();
    assert_eq!(s.session("abc").await.unwrap(), Some(sess));
    s.delete_sessions_of("root").await.unwrap();
    assert_eq!(s.session("abc").await.unwrap(), None);
    assert!(s.delete_admin("root").await.unwrap());
    assert_eq!(s.admin("root").await.unwrap(), None);
}
