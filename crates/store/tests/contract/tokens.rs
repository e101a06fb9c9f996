//! TokenStore: sealed seeds, single-use OTPs, owners, fail counters, reserved attempts.

use super::*;

contract!(
    token_round_trip_seals_seed,
    accept_otp_is_single_use,
    concurrent_accepts_yield_one,
    concurrent_assignments_yield_one_owner,
    fail_counter_caps_and_stamps,
    token_patch,
    token_attempts_are_reserved,
);

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

    // The seed is not in the database in clear (the in-memory store seals nothing).
    let Some(sql) = &h.sql else {
        return;
    };
    let raw: Vec<u8> = match sql.store.backend() {
        "sqlite" => {
            let path = sql.url.trim_start_matches("sqlite://").to_string();
            sql.store.close().await;
            let mut bytes = std::fs::read(&path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            bytes
        }
        _ => {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&sql.url)
                .await
                .unwrap();
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

/// Every OTP check first takes an attempt from its token's fail budget: of 60 attempts at once
/// (on two stores on the same database, like two nodes), exactly `max_fail` are taken; one given
/// back (another token matched) frees its place; accepting clears the count.
async fn token_attempts_are_reserved(h: &Harness) {
    let s = h.store.clone();
    s.insert_token(&token("TR", None)).await.unwrap();
    let serial = Serial::from("TR");
    let other = h.another_node().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 {
            s.clone()
        } else {
            other.store.clone()
        };
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
    other.store.flush().await.unwrap();
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
