//! MetaStore and ConfigStore: the master key, settings and documents, upkeep, and writes of another process.

use super::*;

contract!(
    settings_and_documents_bump_version,
    purge_expired_removes_old_rows,
);

mod database {
    use super::*;

    contract_sql!(
        reopen_with_other_key_is_refused,
        writes_of_another_process_are_seen,
    );
}

async fn reopen_with_other_key_is_refused(h: &Harness) {
    // Same key: fine.
    SqlStore::open(&h.sql().url, &h.sql().key, &StoreOptions::default())
        .await
        .unwrap();
    let other = MasterKey::generate();
    let err = SqlStore::open(&h.sql().url, &other, &StoreOptions::default())
        .await
        .unwrap_err();
    match err {
        OpenError::KeyMismatch { given, expected } => {
            assert_eq!(given, other.id_hex());
            assert_eq!(expected, h.sql().key.id_hex());
        }
        e => panic!("expected KeyMismatch, got {e}"),
    }
}

async fn settings_and_documents_bump_version(h: &Harness) {
    let s = &h.store;
    let v0 = s.config_version().await.unwrap();
    let mut m = serde_json::Map::new();
    m.insert("prepend_pin".into(), json!(false));
    m.insert("otp_issuer".into(), json!("ACME"));
    s.put_settings(&m, 1).await.unwrap();
    let v1 = s.config_version().await.unwrap();
    assert!(v1 > v0);
    let got = s.settings().await.unwrap();
    assert_eq!(got["prepend_pin"], json!(false));
    assert_eq!(got["otp_issuer"], json!("ACME"));

    s.put_config_doc(
        ConfigKind::Realm,
        "Corp",
        &json!({"name": "Corp", "sources": ["local"]}),
        2,
    )
    .await
    .unwrap();
    // Names are case-insensitive keys: this replaces the document.
    s.put_config_doc(
        ConfigKind::Realm,
        "corp",
        &json!({"name": "corp", "sources": ["a", "b"]}),
        3,
    )
    .await
    .unwrap();
    let docs = s.config_docs(ConfigKind::Realm).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].name, "corp");
    assert_eq!(docs[0].body["sources"], json!(["a", "b"]));
    let v2 = s.config_version().await.unwrap();
    assert!(v2 > v1);
    assert!(
        s.config_docs(ConfigKind::Application)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.delete_config_doc(ConfigKind::Realm, "CORP")
            .await
            .unwrap()
    );
    assert!(
        !s.delete_config_doc(ConfigKind::Realm, "corp")
            .await
            .unwrap()
    );
    assert!(s.config_version().await.unwrap() > v2);

    s.set_meta("bootstrapped", "1").await.unwrap();
    assert_eq!(s.meta("bootstrapped").await.unwrap().as_deref(), Some("1"));
    assert_eq!(s.meta("nothing").await.unwrap(), None);
}

async fn purge_expired_removes_old_rows(h: &Harness) {
    let s = &h.store;
    let mk = |id: &str, expires| Transaction {
        id: TransactionId::parse(id).unwrap(),
        user: UserRef {
            source: SourceName::from("local"),
            id: UserId::from("u"),
        },
        username: "u".into(),
        realm: RealmName::from("r"),
        application: AppName::from("a"),
        next_factor: 0,
        status: TxStatus::Pending,
        serials: vec![],
        code: None,
        origin: None,
        created_at: 0,
        expires_at: expires,
    };
    s.create_transaction(&mk("11111111111111111111", 100), None)
        .await
        .unwrap();
    s.create_transaction(&mk("22222222222222222222", 10_000), None)
        .await
        .unwrap();
    s.create_session(&AdminSession {
        token_hash: "old".into(),
        admin: "a".into(),
        role: AdminRole::Auditor,
        created_at: 0,
        expires_at: 50,
    })
    .await
    .unwrap();
    let n = s.purge_expired(100 + 3601).await.unwrap();
    assert_eq!(n, 2);
    assert!(
        s.transaction(&TransactionId::parse("22222222222222222222").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    // A login session's retry counter goes two days on (its transaction lived a day at most);
    // an account's counter stays for its interval.
    let policy = LockPolicy {
        max_password: 5,
        max_otp: 5,
        lock_secs: 60,
        interval_secs: 30 * 86_400,
    };
    let session = LockKey::session("11111111111111111111", 1);
    let account = LockKey::account("realm", "alice");
    for key in [&session, &account] {
        s.reserve_attempt(key, FailKind::Otp, 10_000, &policy)
            .await
            .unwrap();
    }
    // (A day on, only the second transaction goes: it expired.)
    assert_eq!(s.purge_expired(10_000 + 86_400).await.unwrap(), 1);
    assert!(s.lock_state(&session).await.unwrap().is_some());
    assert_eq!(s.purge_expired(10_001 + 2 * 86_400).await.unwrap(), 1);
    assert!(s.lock_state(&session).await.unwrap().is_none());
    assert!(s.lock_state(&account).await.unwrap().is_some());
}

/// Another process on the same database (the CLI beside a running server, a second node) is
/// seen promptly, although SQLite readers keep their snapshot between this process's commits.
async fn writes_of_another_process_are_seen(h: &Harness) {
    let s = &h.store;
    let src = SourceName("local".into());
    // Reads first, so that a reader holds a snapshot from before the other write.
    for _ in 0..3 {
        assert!(s.local_user_by_name(&src, "zed").await.unwrap().is_none());
    }
    let other = SqlStore::open(&h.sql().url, &h.sql().key, &StoreOptions::default())
        .await
        .unwrap();
    other
        .create_local_user(
            &NewLocalUser {
                user: user("local", "z1", "zed"),
                password_hash: None,
            },
            10,
        )
        .await
        .unwrap();
    // Well past the embedded store's snapshot age (5 ms).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let seen = s.local_user_by_name(&src, "zed").await.unwrap();
    assert_eq!(seen.map(|u| u.user.id.0), Some("z1".to_string()));
    // And this process's own writes are seen at once by its next read.
    s.update_local_user(
        &src,
        &UserId("z1".into()),
        &UserPatch {
            email: Some(Some("zed@example.org".into())),
            ..UserPatch::default()
        },
        11,
    )
    .await
    .unwrap();
    let seen = s.local_user_by_name(&src, "zed").await.unwrap().unwrap();
    assert_eq!(seen.user.email.as_deref(), Some("zed@example.org"));
    assert_eq!(s.lost_writes(), 0);
}

/// A long read by another process (`sqlite3 .backup` while the server runs) must not stall the
/// server's writes: SQLite cannot start its log over while it lasts, and the store must not wait
/// for it to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_go_on_during_a_long_read_by_another_process() {
    let h = Harness::sqlite().await;
    let s = &h.store;
    let path = h.sql().url.strip_prefix("sqlite://").unwrap().to_string();
    s.insert_token(&token("B0", None)).await.unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // Writes across several of the writer's log-restart turns (every 250 ms).
    let started = std::time::Instant::now();
    let mut i: u64 = 0;
    while started.elapsed() < std::time::Duration::from_millis(800) {
        let t = token(&format!("B{}", i + 1), None);
        tokio::time::timeout(std::time::Duration::from_secs(3), s.insert_token(&t))
            .await
            .expect("a write waited for another process's read to end")
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        i += 1;
    }
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(s.count_tokens().await.unwrap(), i + 1);
}
