//! FlowStore and OutboxStore: transactions advanced once, sent codes and the messages that carry them.

use super::*;

contract!(transactions_advance_once, codes_and_the_outbox,);

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
