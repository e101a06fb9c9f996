//! The Store contract, run on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::Arc;
use tessera_core::ids::{AppName, RealmName, Serial, SourceName, TransactionId, UserId, UserRef};
use tessera_core::model::{
    AdminAccount, AdminRole, AdminSession, AttemptResult, AuditQuery, AuditRecord, Channel,
    CodeKind, Leg, NewLocalUser, NewToken, OutboxMessage, OutboxStatus, SentCode, TokenKind,
    TokenPatch, TokenState, Transaction, TxOrigin, TxStatus, User, UserPatch,
};
use tessera_core::store::{
    AdminStore, AuditStore, ConfigStore, FlowStore, LockStore, MetaStore, OutboxStore, TokenStore,
    UserStore, WebStateStore,
};
use tessera_core::store::{
    ConfigKind, FailKind, LockKey, LockPolicy, Reservation, StoreError, TokenFilter, UserFilter,
};
use tessera_otp::{Algorithm, Digits};
use tessera_store::{MasterKey, OpenError, SqlStore, StoreOptions};
use tessera_testkit::PgDatabase;
use zeroize::Zeroizing;

struct Harness {
    store: Arc<SqlStore>,
    url: String,
    key: MasterKey,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let key = MasterKey::generate();
        let store = SqlStore::open(&url, &key, &StoreOptions::default())
            .await
            .unwrap();
        Harness {
            store: Arc::new(store),
            url,
            key,
            _dir: Some(dir),
            _pg: None,
        }
    }

    async fn postgres() -> Harness {
        let pg = PgDatabase::create().await;
        let key = MasterKey::generate();
        let store = SqlStore::open(&pg.url, &key, &StoreOptions::default())
            .await
            .unwrap();
        Harness {
            store: Arc::new(store),
            url: pg.url.clone(),
            key,
            _dir: None,
            _pg: Some(pg),
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

contract!(
    reopen_with_other_key_is_refused,
    settings_and_documents_bump_version,
    local_users_crud,
    token_round_trip_seals_seed,
    accept_otp_is_single_use,
    concurrent_accepts_yield_one,
    concurrent_assignments_yield_one_owner,
    fail_counter_caps_and_stamps,
    token_patch,
    transactions_advance_once,
    lockout_counts_locks_and_resets,
    concurrent_reservations_stop_at_the_budget,
    a_lock_outlasts_the_interval,
    locks_cleared_by_key_and_prefix,
    token_attempts_are_reserved,
    audit_append_and_query,
    admins_and_sessions,
    purge_expired_removes_old_rows,
    writes_of_another_process_are_seen,
    codes_and_the_outbox,
    mfa_passwords_set_replace_delete,
    web_state_kept_taken_once_and_listed,
    refresh_tokens_are_spent_once_and_revoked_together,
);

/// A refresh token is spent once (of twenty racing spends, one wins); a spent one is found as
/// spent (its reuse is told apart from an unknown token); revoking a client's tokens for a user
/// spends the live ones of that user and client only; expired ones are neither.
async fn refresh_tokens_are_spent_once_and_revoked_together(h: &Harness) {
    use tessera_core::store::RefreshToken;
    let s = &h.store;
    let rt = |hash: &str, client: &str, user: &str, expires_at: i64| RefreshToken {
        hash: hash.into(),
        client_id: client.into(),
        username: user.into(),
        realm: "default".into(),
        scope: "openid offline_access".into(),
        expires_at,
    };
    for t in [
        rt("r1", "c1", "alice", 1000),
        rt("r2", "c1", "alice", 1000),
        rt("r3", "c1", "bob", 1000),
        rt("r4", "c2", "alice", 1000),
        rt("old", "c1", "alice", 50),
    ] {
        s.put_refresh_token(&t).await.unwrap();
    }
    // Another client's id spends nothing; an expired token is not spent.
    assert!(
        s.use_refresh_token("r1", "c2", 100)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.use_refresh_token("old", "c1", 100)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.spent_refresh_token("old", "c1", 100)
            .await
            .unwrap()
            .is_none()
    );
    let mut racing = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        racing.push(tokio::spawn(async move {
            s.use_refresh_token("r1", "c1", 100).await.unwrap()
        }));
    }
    let mut won = Vec::new();
    for r in racing {
        if let Some(t) = r.await.unwrap() {
            won.push(t);
        }
    }
    assert_eq!(won, vec![rt("r1", "c1", "alice", 1000)]);
    assert_eq!(
        s.spent_refresh_token("r1", "c1", 100).await.unwrap(),
        Some(rt("r1", "c1", "alice", 1000))
    );
    assert!(
        s.spent_refresh_token("r2", "c1", 100)
            .await
            .unwrap()
            .is_none(),
        "live, not spent"
    );
    // Revoked together: alice's live token at c1 (r2); not bob's, not c2's.
    assert_eq!(
        s.revoke_refresh_tokens("c1", "alice", "default", 100)
            .await
            .unwrap(),
        1
    );
    assert!(
        s.use_refresh_token("r2", "c1", 100)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.use_refresh_token("r3", "c1", 100)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.use_refresh_token("r4", "c2", 100)
            .await
            .unwrap()
            .is_some()
    );
}

fn user(source: &str, id: &str, name: &str) -> User {
    User {
        source: SourceName::from(source),
        id: UserId::from(id),
        username: name.into(),
        given_name: Some("Alice".into()),
        surname: Some("Liddell".into()),
        email: Some(format!("{name}@example.org")),
        phone: Some("+4930123456".into()),
        manager: None,
        groups: vec!["staff".into()],
        enabled: true,
        expires_at: None,
        attributes: Default::default(),
    }
}

fn token(serial: &str, owner: Option<UserRef>) -> NewToken {
    NewToken {
        serial: Serial::from(serial),
        kind: TokenKind::Totp,
        owner,
        description: "phone".into(),
        seed: Zeroizing::new(b"12345678901234567890".to_vec()),
        algorithm: Algorithm::Sha1,
        digits: Digits::Six,
        period: 30,
        counter: 0,
        window: 1,
        sync_window: 1000,
        pin_hash: None,
        max_fail: 3,
        fail_count: 0,
        state: TokenState::Enabled,
        created_at: 1_700_000_000,
    }
}

async fn reopen_with_other_key_is_refused(h: &Harness) {
    // Same key: fine.
    SqlStore::open(&h.url, &h.key, &StoreOptions::default())
        .await
        .unwrap();
    let other = MasterKey::generate();
    let err = SqlStore::open(&h.url, &other, &StoreOptions::default())
        .await
        .unwrap_err();
    match err {
        OpenError::KeyMismatch { given, expected } => {
            assert_eq!(given, other.id_hex());
            assert_eq!(expected, h.key.id_hex());
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

async fn token_round_trip_seals_seed(h: &Harness) {
    let s = &h.store;
    let owner = UserRef {
        source: SourceName::from("local"),
        id: UserId::from("u1"),
    };
    s.insert_token(&token("TOTP0001", Some(owner.clone())))
        .await
        .unwrap();
    s.insert_token(&token("TOTP0002", Some(owner.clone())))
        .await
        .unwrap();
    s.insert_token(&token("TOTP0003", None)).await.unwrap();
    let dup = s.insert_token(&token("TOTP0001", None)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));

    let t = s.token(&Serial::from("TOTP0001")).await.unwrap().unwrap();
    assert_eq!(t.seed.as_slice(), b"12345678901234567890");
    assert_eq!(t.owner, Some(owner.clone()));
    assert_eq!(t.state, TokenState::Enabled);
    assert_eq!(t.digits, Digits::Six);
    assert_eq!(s.tokens_of(&owner).await.unwrap().len(), 2);
    assert_eq!(s.count_tokens().await.unwrap(), 3);
    let listed = s
        .list_tokens(&TokenFilter {
            owner: Some(owner.clone()),
            ..TokenFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    // The seed is not in the database in clear.
    let raw: Vec<u8> = match s.backend() {
        "sqlite" => {
            let path = h.url.trim_start_matches("sqlite://").to_string();
            s.close().await;
            let mut bytes = std::fs::read(&path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            bytes
        }
        _ => {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&h.url).await.unwrap();
            let seeds: Vec<Vec<u8>> = sqlx::query_scalar("SELECT seed FROM tokens")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            seeds.concat()
        }
    };
    assert!(
        !raw.windows(20).any(|w| w == b"12345678901234567890"),
        "seed found in clear"
    );
    assert!(
        !raw.windows(32)
            .any(|w| w == b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    );
}

async fn accept_otp_is_single_use(h: &Harness) {
    let s = &h.store;
    s.insert_token(&token("T1", None)).await.unwrap();
    let serial = Serial::from("T1");
    assert!(s.accept_otp(&serial, 5, 100, true).await.unwrap());
    assert!(
        !s.accept_otp(&serial, 5, 101, true).await.unwrap(),
        "replay"
    );
    assert!(!s.accept_otp(&serial, 4, 101, true).await.unwrap(), "older");
    assert!(s.accept_otp(&serial, 7, 102, true).await.unwrap());
    // Deciding writes are seen by reads once committed.
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(t.counter, 8);
    assert_eq!(t.count_auth_success, 2);
    assert_eq!(t.last_auth, Some(102));
    // A disabled token accepts nothing.
    s.update_token(
        &serial,
        &TokenPatch {
            state: Some(TokenState::Disabled),
            ..TokenPatch::default()
        },
    )
    .await
    .unwrap();
    assert!(!s.accept_otp(&serial, 9, 103, true).await.unwrap());
    // Without the auth counter the counts stay.
    s.update_token(
        &serial,
        &TokenPatch {
            state: Some(TokenState::Enabled),
            ..TokenPatch::default()
        },
    )
    .await
    .unwrap();
    assert!(s.accept_otp(&serial, 9, 104, false).await.unwrap());
    s.flush().await.unwrap();
    assert_eq!(
        s.token(&serial).await.unwrap().unwrap().count_auth_success,
        2
    );
}

async fn concurrent_accepts_yield_one(h: &Harness) {
    let s = h.store.clone();
    s.insert_token(&token("RACE", None)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_otp(&Serial::from("RACE"), 42, 1, true)
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

async fn concurrent_assignments_yield_one_owner(h: &Harness) {
    let s = h.store.clone();
    s.insert_token(&token("UNOWNED", None)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let owner = UserRef {
                source: SourceName("local".into()),
                id: UserId(format!("u{i}")),
            };
            let won = s
                .assign_token(&Serial::from("UNOWNED"), &owner)
                .await
                .unwrap();
            (won, owner)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (won, owner) = t.await.unwrap();
        if won {
            winners.push(owner);
        }
    }
    assert_eq!(winners.len(), 1);
    let t = s.token(&Serial::from("UNOWNED")).await.unwrap().unwrap();
    assert_eq!(t.owner.as_ref(), Some(&winners[0]));
    // An owned token and a missing one are not assigned.
    let other = UserRef {
        source: SourceName("local".into()),
        id: UserId("other".into()),
    };
    assert!(
        !s.assign_token(&Serial::from("UNOWNED"), &other)
            .await
            .unwrap()
    );
    assert!(!s.assign_token(&Serial::from("NONE"), &other).await.unwrap());
}

async fn fail_counter_caps_and_stamps(h: &Harness) {
    let s = &h.store;
    s.insert_token(&token("F1", None)).await.unwrap();
    let serial = Serial::from("F1");
    for now in [10, 20, 30, 40, 50] {
        s.record_otp_failures(std::slice::from_ref(&serial), now, true, 0)
            .await
            .unwrap();
    }
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(t.fail_count, 3, "capped at max_fail");
    assert_eq!(t.fail_exceeded_at, Some(30), "stamped once, when reached");
    assert_eq!(t.count_auth, 5);
    assert!(t.is_locked_by_failcount(31, 0));
    assert!(t.is_locked_by_failcount(31, 1));
    assert!(!t.is_locked_by_failcount(30 + 60, 1));
    // At the limit no attempt is taken; once failcounter_clear_minutes passed, the count starts
    // afresh with the next attempt, and a success clears the counter and the stamp.
    assert!(!s.reserve_token_attempt(&serial, 89, 1, true).await.unwrap());
    assert!(s.reserve_token_attempt(&serial, 90, 1, true).await.unwrap());
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!((t.fail_count, t.fail_exceeded_at), (1, None));
    assert!(s.accept_otp(&serial, 1, 100, true).await.unwrap());
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!((t.fail_count, t.fail_exceeded_at), (0, None));
    // Wrong PINs counted without a check start afresh too once the clear time passed.
    for now in [200, 210, 220] {
        s.record_otp_failures(std::slice::from_ref(&serial), now, true, 1)
            .await
            .unwrap();
    }
    s.record_otp_failures(std::slice::from_ref(&serial), 280, true, 1)
        .await
        .unwrap();
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(
        (t.fail_count, t.fail_exceeded_at),
        (1, None),
        "afresh at 280"
    );

    s.set_resync_state(&serial, Some(77), Some(5))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!((t.resync_counter, t.resync_at), (Some(77), Some(5)));
}

async fn token_patch(h: &Harness) {
    let s = &h.store;
    s.insert_token(&token("P1", None)).await.unwrap();
    let serial = Serial::from("P1");
    s.record_otp_failures(std::slice::from_ref(&serial), 1, true, 0)
        .await
        .unwrap();
    assert!(
        s.update_token(
            &serial,
            &TokenPatch {
                description: Some("backup phone".into()),
                pin_hash: Some(Some("$argon2id$pin".into())),
                max_fail: Some(20),
                window: Some(3),
                sync_window: Some(50),
                reset_failcount: true,
                counter: Some(1234),
                ..TokenPatch::default()
            },
        )
        .await
        .unwrap()
    );
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(t.description, "backup phone");
    assert_eq!(t.pin_hash.as_deref(), Some("$argon2id$pin"));
    assert_eq!((t.max_fail, t.window, t.sync_window), (20, 3, 50));
    assert_eq!((t.fail_count, t.counter), (0, 1234));
    // An empty patch changes nothing; removing the PIN.
    s.update_token(&serial, &TokenPatch::default())
        .await
        .unwrap();
    s.update_token(
        &serial,
        &TokenPatch {
            pin_hash: Some(None),
            ..TokenPatch::default()
        },
    )
    .await
    .unwrap();
    let t2 = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(t2.pin_hash, None);
    assert_eq!(t2.description, "backup phone");
    // The counter only moves forward: a patch behind it changes nothing at all.
    assert!(
        !s.update_token(
            &serial,
            &TokenPatch {
                counter: Some(1000),
                description: Some("moved back".into()),
                ..TokenPatch::default()
            },
        )
        .await
        .unwrap()
    );
    let t3 = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(
        (t3.counter, t3.description.as_str()),
        (1234, "backup phone")
    );
    assert!(
        !s.update_token(&Serial::from("nope"), &TokenPatch::default())
            .await
            .unwrap()
    );
    assert!(s.delete_token(&serial).await.unwrap());
    assert!(s.token(&serial).await.unwrap().is_none());
}

async fn transactions_advance_once(h: &Harness) {
    let s = &h.store;
    let id = TransactionId::parse("12345678901234567890").unwrap();
    let tx = Transaction {
        id: id.clone(),
        user: UserRef {
            source: SourceName::from("local"),
            id: UserId::from("u1"),
        },
        username: "alice".into(),
        realm: RealmName::from("default"),
        application: AppName::from("vpn"),
        next_factor: 1,
        status: TxStatus::Pending,
        serials: vec![Serial::from("A"), Serial::from("B")],
        code: None,
        created_at: 100,
        expires_at: 220,
        origin: Some(TxOrigin {
            door: "radius".into(),
            client: Some("vpn".into()),
            application: "vpn".into(),
        }),
    };
    s.create_transaction(&tx, None).await.unwrap();
    // Kept as it was created, origin included.
    assert_eq!(s.transaction(&id).await.unwrap().as_ref(), Some(&tx));
    assert!(matches!(
        s.create_transaction(&tx, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.transaction(&id).await.unwrap().unwrap(), tx);
    assert!(
        s.advance_transaction(&id, 1, 2, &[Serial::from("C")], false)
            .await
            .unwrap()
    );
    assert!(
        !s.advance_transaction(&id, 1, 2, &[], false).await.unwrap(),
        "moved already"
    );
    let t = s.transaction(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.next_factor, t.serials.clone()),
        (2, vec![Serial::from("C")])
    );
    assert!(s.advance_transaction(&id, 2, 2, &[], true).await.unwrap());
    assert_eq!(
        s.transaction(&id).await.unwrap().unwrap().status,
        TxStatus::Completed
    );
    assert!(!s.advance_transaction(&id, 2, 2, &[], true).await.unwrap());
    let other = TransactionId::parse("00000000000000000001").unwrap();
    assert!(s.transaction(&other).await.unwrap().is_none());
    assert!(
        !s.set_transaction_status(&other, TxStatus::Answered)
            .await
            .unwrap()
    );
}

async fn lockout_counts_locks_and_resets(h: &Harness) {
    let s = &h.store;
    let p = LockPolicy {
        max_password: 3,
        max_otp: 2,
        lock_secs: 600,
        interval_secs: 300,
    };
    let k = LockKey::account("default", "k");
    let st = s
        .reserve_attempt(&k, FailKind::Password, 1000, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.password_fails, st.otp_fails, st.locked_until),
        (1, 0, None)
    );
    let st = s
        .reserve_attempt(&k, FailKind::Otp, 1010, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.password_fails, st.otp_fails, st.first_fail_at),
        (1, 1, 1000)
    );
    // The attempt that uses up a budget is taken, and locks at once.
    let st = s
        .reserve_attempt(&k, FailKind::Otp, 1020, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.otp_fails, 2);
    assert_eq!(st.locked_until, Some(1620), "OTP budget used up");
    assert!(st.is_locked(1619) && !st.is_locked(1620));
    // While locked, no attempt of either kind is taken, and nothing changes.
    assert_eq!(
        s.reserve_attempt(&k, FailKind::Password, 1030, &p)
            .await
            .unwrap(),
        None
    );
    s.flush().await.unwrap();
    assert_eq!(s.lock_state(&k).await.unwrap(), Some(st));
    // After the lock ran out the count starts afresh.
    let st = s
        .reserve_attempt(&k, FailKind::Otp, 1700, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.password_fails, st.otp_fails, st.locked_until),
        (0, 1, None)
    );
    // Failures further apart than the interval start afresh too.
    let st = s
        .reserve_attempt(&k, FailKind::Password, 1700 + 300, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.password_fails, st.otp_fails, st.first_fail_at),
        (1, 0, 2000)
    );
    s.clear_locks(std::slice::from_ref(&k)).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.lock_state(&k).await.unwrap(), None);
    // A budget of one: the first attempt is taken (and locks), the second is not.
    let one = LockPolicy {
        max_password: 1,
        ..p
    };
    let j = LockKey::admin("j");
    let st = s
        .reserve_attempt(&j, FailKind::Password, 5, &one)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.locked_until, Some(605));
    assert_eq!(
        s.reserve_attempt(&j, FailKind::Password, 6, &one)
            .await
            .unwrap(),
        None
    );
    // Given back (it was right): unlocked, and the next failure starts a new count.
    s.release_attempt(&Reservation {
        key: j.clone(),
        kind: FailKind::Password,
        policy: one,
        since: 5,
        attempt: 1,
    })
    .await
    .unwrap();
    s.flush().await.unwrap();
    let st = s.lock_state(&j).await.unwrap().unwrap();
    assert_eq!((st.password_fails, st.locked_until), (0, None));
    let st = s
        .reserve_attempt(&j, FailKind::Password, 50, &one)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((st.password_fails, st.first_fail_at), (1, 50));
    // An attempt taken before a count started afresh gives nothing back from the new count.
    s.release_attempt(&Reservation {
        key: j.clone(),
        kind: FailKind::Password,
        policy: one,
        since: 49,
        attempt: 1,
    })
    .await
    .unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.lock_state(&j).await.unwrap().unwrap().password_fails, 1);
}

/// A lock lasts its whole period, also when that is longer than the interval that groups
/// failures: the count does not start afresh under a lock.
async fn a_lock_outlasts_the_interval(h: &Harness) {
    let s = &h.store;
    let p = LockPolicy {
        max_password: 2,
        max_otp: 2,
        lock_secs: 3600,
        interval_secs: 60,
    };
    let k = LockKey::account("default", "long-lock");
    for now in [100, 110] {
        assert!(
            s.reserve_attempt(&k, FailKind::Password, now, &p)
                .await
                .unwrap()
                .is_some()
        );
    }
    // Past the interval (100 + 60), within the lock (110 + 3600): refused.
    for now in [161, 1000, 3709] {
        assert_eq!(
            s.reserve_attempt(&k, FailKind::Password, now, &p)
                .await
                .unwrap(),
            None,
            "at {now}"
        );
    }
    // The lock ran out: a new count.
    let st = s
        .reserve_attempt(&k, FailKind::Password, 3710, &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.password_fails, st.first_fail_at, st.locked_until),
        (1, 3710, None)
    );
}

/// Attempts sent at once take no more than the budget: of 60 reservations, exactly `max` are
/// granted, also split between two stores on the same database (two nodes).
async fn concurrent_reservations_stop_at_the_budget(h: &Harness) {
    let other = Arc::new(
        SqlStore::open(&h.url, &h.key, &StoreOptions::default())
            .await
            .unwrap(),
    );
    let p = LockPolicy {
        max_password: 5,
        max_otp: 7,
        lock_secs: 600,
        interval_secs: 600,
    };
    for (kind, max) in [(FailKind::Password, 5), (FailKind::Otp, 7)] {
        let key = LockKey::account("default", &format!("burst-{max}"));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let s: Arc<SqlStore> = if i % 2 == 0 {
                h.store.clone()
            } else {
                other.clone()
            };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                s.reserve_attempt(&key, kind, 1000, &p).await.unwrap()
            }));
        }
        let mut granted = Vec::new();
        for t in tasks {
            if let Some(st) = t.await.unwrap() {
                granted.push(st.fails(kind));
            }
        }
        granted.sort_unstable();
        assert_eq!(granted, (1..=max).collect::<Vec<u32>>(), "{kind:?}");
    }
}

/// Removing the counts of many keys at once, and of an account's per-address keys.
async fn locks_cleared_by_key_and_prefix(h: &Harness) {
    let s = &h.store;
    let p = LockPolicy {
        max_password: 5,
        max_otp: 5,
        lock_secs: 60,
        interval_secs: 60,
    };
    let ip = |a: &str| Some(a.parse().unwrap());
    let keys = [
        LockKey::account("r", "bob"),
        LockKey::mfa("r", "bob"),
        LockKey::account_from("r", "bob", ip("192.0.2.1")),
        LockKey::account_from("r", "bob", ip("2001:db8::1")),
        LockKey::account_from("r", "bob%", ip("192.0.2.1")),
        LockKey::account_from("r", "bo_", ip("192.0.2.1")),
    ];
    for key in &keys {
        s.reserve_attempt(key, FailKind::Otp, 10, &p).await.unwrap();
    }
    // LIKE's wildcards in a name do not reach other accounts.
    assert_eq!(
        s.clear_locks_with_prefix(&LockKey::account_addresses_prefix("R", "Bob"))
            .await
            .unwrap(),
        2
    );
    s.clear_locks(&keys[..2]).await.unwrap();
    s.flush().await.unwrap();
    for key in &keys[..4] {
        assert_eq!(s.lock_state(key).await.unwrap(), None, "{key:?}");
    }
    for key in &keys[4..] {
        assert!(s.lock_state(key).await.unwrap().is_some(), "{key:?}");
    }
}

/// Every OTP check first takes an attempt from its token's fail budget: of 60 attempts at once
/// (on two stores on the same database, like two nodes), exactly `max_fail` are taken; one given
/// back (another token matched) frees its place; accepting clears the count.
async fn token_attempts_are_reserved(h: &Harness) {
    let s = h.store.clone();
    s.insert_token(&token("TR", None)).await.unwrap();
    let serial = Serial::from("TR");
    let other = Arc::new(
        SqlStore::open(&h.url, &h.key, &StoreOptions::default())
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s: Arc<SqlStore> = if i % 2 == 0 { s.clone() } else { other.clone() };
        let serial = serial.clone();
        tasks.push(tokio::spawn(async move {
            s.reserve_token_attempt(&serial, 1000, 0, true)
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 3, "max_fail is 3");
    s.flush().await.unwrap();
    other.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(
        (t.fail_count, t.fail_exceeded_at, t.count_auth),
        (3, Some(1000), 3)
    );
    s.release_token_attempt(&serial, true).await.unwrap();
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!(
        (t.fail_count, t.fail_exceeded_at, t.count_auth),
        (2, None, 2)
    );
    assert!(
        s.reserve_token_attempt(&serial, 1001, 0, true)
            .await
            .unwrap()
    );
    assert!(s.accept_otp(&serial, 5, 1001, true).await.unwrap());
    s.flush().await.unwrap();
    let t = s.token(&serial).await.unwrap().unwrap();
    assert_eq!((t.fail_count, t.counter, t.count_auth_success), (0, 6, 1));
    // A disabled token takes no attempt.
    s.update_token(
        &serial,
        &TokenPatch {
            state: Some(TokenState::Disabled),
            ..TokenPatch::default()
        },
    )
    .await
    .unwrap();
    assert!(
        !s.reserve_token_attempt(&serial, 1002, 0, true)
            .await
            .unwrap()
    );
    other.close().await;
}

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

async fn web_state_kept_taken_once_and_listed(h: &Harness) {
    use tessera_core::store::{WebState, WebStateKind};
    const SSO: WebStateKind = WebStateKind::SsoSession;
    let s = &h.store;
    let state = |key: &str, subject: &str, expires_at: i64| WebState {
        kind: SSO,
        key_hash: key.into(),
        subject: subject.into(),
        data: format!("{{\"k\":\"{key}\"}}"),
        expires_at,
    };
    s.put_web_state(&state("a", "alice", 200)).await.unwrap();
    s.put_web_state(&state("b", "alice", 300)).await.unwrap();
    s.put_web_state(&state("c", "bob", 300)).await.unwrap();
    s.put_web_state(&state("old", "alice", 50)).await.unwrap();
    assert_eq!(
        s.web_state(SSO, "a", 100).await.unwrap(),
        Some(state("a", "alice", 200))
    );
    assert_eq!(s.web_state(SSO, "old", 100).await.unwrap(), None, "expired");
    assert_eq!(
        s.web_state(WebStateKind::AuthCode, "a", 100).await.unwrap(),
        None,
        "other kind"
    );
    let mine: Vec<String> = s
        .web_states_of(SSO, "alice", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.key_hash)
        .collect();
    assert_eq!(mine, vec!["a".to_string(), "b".to_string()]);
    assert!(s.take_web_state(SSO, "b", 100).await.unwrap().is_some());
    assert_eq!(s.take_web_state(SSO, "b", 100).await.unwrap(), None, "once");
    assert!(s.delete_web_state(SSO, "a").await.unwrap());
    assert!(!s.delete_web_state(SSO, "a").await.unwrap());
    // Claimed once while it lives; an expired one is taken over.
    assert!(s.claim_web_state(&state("n", "", 200), 100).await.unwrap());
    assert!(!s.claim_web_state(&state("n", "", 400), 150).await.unwrap());
    assert_eq!(
        s.web_state(SSO, "n", 150)
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        200
    );
    assert!(s.claim_web_state(&state("n", "", 400), 200).await.unwrap());
    assert!(!s.claim_web_state(&state("old", "", 400), 10).await.unwrap());
    assert!(
        s.claim_web_state(&state("old", "", 400), 100)
            .await
            .unwrap()
    );
    assert_eq!(
        s.web_state(SSO, "c", 100).await.unwrap().unwrap().subject,
        "bob"
    );
    // Changed only while it still holds what the caller read: of two read-modify-writes at
    // once, one wins; its subject and end stay; an expired one is not changed.
    let was = state("c", "bob", 300).data;
    assert!(
        s.update_web_state(SSO, "c", &was, "{\"k\":2}", 100)
            .await
            .unwrap()
    );
    assert!(
        !s.update_web_state(SSO, "c", &was, "{\"k\":3}", 100)
            .await
            .unwrap()
    );
    let now = s.web_state(SSO, "c", 100).await.unwrap().unwrap();
    assert_eq!(
        (now.data.as_str(), now.subject.as_str(), now.expires_at),
        ("{\"k\":2}", "bob", 300)
    );
    assert!(
        !s.update_web_state(SSO, "c", "{\"k\":2}", "{\"k\":4}", 300)
            .await
            .unwrap()
    );
    assert!(
        !s.update_web_state(SSO, "nobody", "", "{}", 100)
            .await
            .unwrap()
    );
    // Every kind reads back as itself.
    for kind in WebStateKind::ALL {
        s.put_web_state(&WebState {
            kind,
            ..state("k", "", 200)
        })
        .await
        .unwrap();
        assert_eq!(
            s.web_state(kind, "k", 100).await.unwrap().map(|w| w.kind),
            Some(kind)
        );
    }
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
    let other = SqlStore::open(&h.url, &h.key, &StoreOptions::default())
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
    let path = h.url.strip_prefix("sqlite://").unwrap().to_string();
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

fn message(id: &str, tx: Option<&TransactionId>) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        legs: vec![
            Leg {
                channel: Channel::Whatsapp,
                profiles: vec!["wa".into()],
                recipient: "+4915100000001".into(),
                subject: None,
                body: Zeroizing::new("WhatsApp code: 123456".into()),
                html: None,
            },
            Leg {
                channel: Channel::Sms,
                profiles: vec!["gw1".into(), "gw2".into()],
                recipient: "+4915100000001".into(),
                subject: None,
                body: Zeroizing::new("Your code: 123456".into()),
                html: Some(Zeroizing::new("<p>Your code: 123456</p>".into())),
            },
        ],
        transaction_id: tx.cloned(),
        username: Some("alice".into()),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: 100,
        not_after: 400,
        last_error: None,
        sent_by: None,
        created_at: 100,
        updated_at: 100,
    }
}

/// A transaction and the message carrying its code are stored together; the message is
/// claimed by one caller per attempt, its body sealed, retried and finished.
async fn codes_and_the_outbox(h: &Harness) {
    let s = &h.store;
    let id = TransactionId::parse("33333333333333333333").unwrap();
    let code = SentCode {
        hash: SentCode::hash_of(&id, CodeKind::Code, "123456"),
        kind: CodeKind::Code,
        factor: 0,
        fails: 0,
        expires_at: 400,
    };
    let tx = Transaction {
        id: id.clone(),
        user: UserRef {
            source: SourceName::from("local"),
            id: UserId::from("u1"),
        },
        username: "alice".into(),
        realm: RealmName::from("default"),
        application: AppName::from("vpn"),
        next_factor: 0,
        status: TxStatus::Pending,
        serials: vec![],
        code: Some(code.clone()),
        created_at: 100,
        expires_at: 400,
        origin: None,
    };
    let m = message("a1", Some(&id));
    s.create_transaction(&tx, Some(&m)).await.unwrap();
    assert_eq!(s.transaction(&id).await.unwrap().unwrap(), tx);
    // Both or neither: a second transaction with the same id takes its message with it.
    let m2 = message("a2", Some(&id));
    assert!(s.create_transaction(&tx, Some(&m2)).await.is_err());
    assert_eq!(s.list_outbox(true, 10).await.unwrap().len(), 1);
    // Every answer takes one of the code's answers, also in parallel: three at most here.
    let reserve = || s.reserve_code_attempt(&id, 0, 3, 150);
    let (a, b) = tokio::join!(reserve(), reserve());
    assert_eq!(a.unwrap().as_deref(), Some(code.hash.as_str()));
    assert!(b.unwrap().is_some());
    assert!(
        s.reserve_code_attempt(&id, 1, 3, 150)
            .await
            .unwrap()
            .is_none(),
        "other factor"
    );
    assert!(
        s.reserve_code_attempt(&id, 0, 3, 400)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(reserve().await.unwrap().is_some());
    assert!(reserve().await.unwrap().is_none(), "answers used up");
    assert_eq!(
        s.transaction(&id)
            .await
            .unwrap()
            .unwrap()
            .code
            .unwrap()
            .fails,
        3
    );
    // A right answer spends the code, once.
    assert!(s.consume_code(&id, &code.hash).await.unwrap());
    assert!(!s.consume_code(&id, &code.hash).await.unwrap());
    assert!(s.transaction(&id).await.unwrap().unwrap().code.is_none());

    // Not due yet; then one claim per attempt.
    assert!(s.claim_outbox(99, 200, 10).await.unwrap().is_empty());
    let (a, b) = tokio::join!(s.claim_outbox(100, 160, 10), s.claim_outbox(100, 160, 10));
    let claimed: Vec<OutboxMessage> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(claimed.len(), 1, "one caller wins the attempt");
    let got = &claimed[0];
    assert_eq!(got.attempts, 1);
    assert_eq!(got.status, OutboxStatus::Sending);
    assert_eq!(
        got.legs,
        message("a1", Some(&id)).legs,
        "legs unsealed as queued"
    );
    assert_eq!(got.legs[1].body.as_str(), "Your code: 123456");
    // The lease holds until 160; a retry is scheduled.
    assert!(s.claim_outbox(150, 300, 10).await.unwrap().is_empty());
    let retry = AttemptResult::Retry {
        at: 170,
        error: "gw1: HTTP 500".into(),
    };
    assert!(s.finish_outbox("a1", 1, &retry, 150).await.unwrap());
    assert!(
        !s.finish_outbox("a1", 1, &retry, 150).await.unwrap(),
        "attempt over"
    );
    // A node that took it and died: after the lease another attempt takes it.
    let again = s.claim_outbox(170, 180, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("gw1: HTTP 500"));
    let third = s.claim_outbox(181, 300, 10).await.unwrap();
    assert_eq!(third[0].attempts, 3, "the lease of attempt 2 ran out");
    assert!(
        !s.finish_outbox("a1", 2, &AttemptResult::Sent { by: "gw2".into() }, 182)
            .await
            .unwrap(),
        "attempt 2 lost its lease"
    );
    assert!(
        s.finish_outbox("a1", 3, &AttemptResult::Sent { by: "gw2".into() }, 182)
            .await
            .unwrap()
    );
    assert!(s.claim_outbox(10_000, 20_000, 10).await.unwrap().is_empty());
    assert!(s.list_outbox(false, 10).await.unwrap().is_empty(), "sent");
    let all = s.list_outbox(true, 10).await.unwrap();
    assert_eq!(all[0].status, OutboxStatus::Sent);
    assert_eq!(all[0].sent_by.as_deref(), Some("gw2"));

    // Moving a transaction to a code factor queues its message with the move, once.
    let id2 = TransactionId::parse("44444444444444444444").unwrap();
    let tx2 = Transaction {
        id: id2.clone(),
        code: None,
        next_factor: 0,
        ..tx.clone()
    };
    s.create_transaction(&tx2, None).await.unwrap();
    let link = SentCode {
        hash: SentCode::hash_of(&id2, CodeKind::Link, "token"),
        kind: CodeKind::Link,
        factor: 1,
        fails: 0,
        expires_at: 500,
    };
    let m3 = message("a3", Some(&id2));
    assert!(
        s.advance_with_code(&id2, 0, 1, &[], &link, &m3)
            .await
            .unwrap()
    );
    // A concurrent answer that lost the move brings its own (other) secret: nothing queued.
    let other = SentCode {
        hash: SentCode::hash_of(&id2, CodeKind::Link, "other"),
        ..link.clone()
    };
    let m4 = message("a4", Some(&id2));
    assert!(
        !s.advance_with_code(&id2, 0, 1, &[], &other, &m4)
            .await
            .unwrap()
    );
    let t2 = s.transaction(&id2).await.unwrap().unwrap();
    assert_eq!((t2.next_factor, t2.code.clone()), (1, Some(link.clone())));
    // A link answers its factor once, with its token, unexpired.
    assert!(
        !s.answer_link(&id2, &other.hash, TxStatus::Answered, 200)
            .await
            .unwrap()
    );
    assert!(
        !s.answer_link(&id2, &link.hash, TxStatus::Answered, 500)
            .await
            .unwrap()
    );
    assert!(
        s.answer_link(&id2, &link.hash, TxStatus::Answered, 200)
            .await
            .unwrap()
    );
    assert!(
        !s.answer_link(&id2, &link.hash, TxStatus::Declined, 200)
            .await
            .unwrap()
    );
    // Moving on clears the link: it answers nothing later.
    assert!(s.advance_transaction(&id2, 1, 2, &[], false).await.unwrap());
    let t2 = s.transaction(&id2).await.unwrap().unwrap();
    assert_eq!((t2.status, t2.code), (TxStatus::Pending, None));
    assert!(
        !s.answer_link(&id2, &link.hash, TxStatus::Answered, 200)
            .await
            .unwrap()
    );
    let ids: Vec<String> = s
        .list_outbox(true, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(
        ids.contains(&"a3".to_string()) && !ids.contains(&"a4".to_string()),
        "{ids:?}"
    );
    let f = AttemptResult::Failed {
        error: "expired".into(),
    };
    let claimed = s.claim_outbox(200, 260, 10).await.unwrap();
    assert!(
        s.finish_outbox("a3", claimed[0].attempts, &f, 200)
            .await
            .unwrap()
    );
    assert_eq!(
        s.list_outbox(false, 10).await.unwrap()[0].status,
        OutboxStatus::Failed
    );
}
