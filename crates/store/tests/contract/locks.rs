//! LockStore: lockout budgets reserved, locked, given back and cleared.

use super::*;

contract!(
    lockout_counts_locks_and_resets,
    concurrent_reservations_stop_at_the_budget,
    a_lock_outlasts_the_interval,
    locks_cleared_by_key_and_prefix,
);

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

/// Attempts sent at once take no more than the budget: of 60 reservations, exactly `max` are
/// granted, also split between two stores on the same database (two nodes).
async fn concurrent_reservations_stop_at_the_budget(h: &Harness) {
    let other = h.another_node().await;
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
            let s = if i % 2 == 0 {
                h.store.clone()
            } else {
                other.store.clone()
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
