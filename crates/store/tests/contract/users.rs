//! UserStore: local users and MFA passwords.

use super::*;

contract!(local_users_crud, mfa_passwords_set_replace_delete,);

async fn local_users_crud(h: &Harness) {
    let s = &h.store;
    let u = user("local", "u1", "Alice");
    s.create_local_user(
        &NewLocalUser {
            user: u.clone(),
            password_hash: Some("$argon2id$fake".into()),
        },
        10,
    )
    .await
    .unwrap();
    let dup = s
        .create_local_user(
            &NewLocalUser {
                user: user("local", "u2", "alice"),
                password_hash: None,
            },
            10,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // The same name in another source is another user.
    s.create_local_user(
        &NewLocalUser {
            user: user("other", "u2", "alice"),
            password_hash: None,
        },
        10,
    )
    .await
    .unwrap();

    let found = s
        .local_user_by_name(&SourceName::from("local"), "ALICE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, u);
    assert_eq!(found.password_hash.as_deref(), Some("$argon2id$fake"));
    assert!(
        s.local_user_by_name(&SourceName::from("local"), "bob")
            .await
            .unwrap()
            .is_none()
    );

    let patch = UserPatch {
        email: Some(None),
        groups: Some(vec!["vpn".into(), "admins".into()]),
        enabled: Some(false),
        expires_at: Some(Some(2_000_000_000)),
        password_hash: Some(Some("$argon2id$new".into())),
        ..UserPatch::default()
    };
    assert!(
        s.update_local_user(&SourceName::from("local"), &UserId::from("u1"), &patch, 20)
            .await
            .unwrap()
    );
    let after = s
        .local_user_by_id(&SourceName::from("local"), &UserId::from("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.user.email, None);
    assert_eq!(
        after.user.groups,
        vec!["vpn".to_string(), "admins".to_string()]
    );
    assert!(!after.user.enabled);
    assert_eq!(after.user.expires_at, Some(2_000_000_000));
    assert_eq!(after.user.given_name.as_deref(), Some("Alice"));
    assert_eq!(after.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(after.updated_at, 20);

    let all = s.list_local_users(&UserFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let filtered = s
        .list_local_users(&UserFilter {
            source: Some(SourceName::from("local")),
            search: Some("lid".into()),
            ..UserFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    // LIKE wildcards in the search are literal.
    let none = s
        .list_local_users(&UserFilter {
            search: Some("%".into()),
            ..UserFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(s.count_local_users(None).await.unwrap(), 2);
    assert_eq!(
        s.count_local_users(Some(&SourceName::from("other")))
            .await
            .unwrap(),
        1
    );
    assert!(
        s.delete_local_user(&SourceName::from("local"), &UserId::from("u1"))
            .await
            .unwrap()
    );
    assert!(
        !s.delete_local_user(&SourceName::from("local"), &UserId::from("u1"))
            .await
            .unwrap()
    );
}

async fn mfa_passwords_set_replace_delete(h: &Harness) {
    let s = &h.store;
    let alice = user("corp", "guid-1", "alice").user_ref();
    let bob = user("corp", "guid-2", "bob").user_ref();
    assert_eq!(s.mfa_password(&alice).await.unwrap(), None);
    s.set_mfa_password(&alice, "$argon2id$a", 1).await.unwrap();
    s.set_mfa_password(&bob, "$argon2id$b", 1).await.unwrap();
    s.set_mfa_password(&alice, "$argon2id$a2", 2).await.unwrap();
    assert_eq!(
        s.mfa_password(&alice).await.unwrap().as_deref(),
        Some("$argon2id$a2")
    );
    assert!(s.delete_mfa_password(&alice).await.unwrap());
    assert!(!s.delete_mfa_password(&alice).await.unwrap());
    assert_eq!(s.mfa_password(&alice).await.unwrap(), None);
    assert_eq!(
        s.mfa_password(&bob).await.unwrap().as_deref(),
        Some("$argon2id$b")
    );
}
