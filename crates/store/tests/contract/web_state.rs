//! WebStateStore: web sign-in state and OAuth grants.

use super::*;

contract!(
    web_state_kept_taken_once_and_listed,
    refresh_tokens_are_spent_once_and_revoked_together,
    a_burst_takes_a_code_and_claims_a_mark_once,
);

/// Sixty requests at once, half on another node: an authorization code is redeemed once, a
/// replay mark (SAML request ID, payload nonce) claimed once, a session changed by one of
/// sixty conditional updates that read the same version.
async fn a_burst_takes_a_code_and_claims_a_mark_once(h: &Harness) {
    use tessera_core::store::{WebState, WebStateKind};
    let other = h.another_node().await;
    let state = |kind, key: &str| WebState {
        kind,
        key_hash: key.into(),
        subject: String::new(),
        data: "v1".into(),
        expires_at: 2000,
    };
    h.store
        .put_web_state(&state(WebStateKind::AuthCode, "code"))
        .await
        .unwrap();
    h.store
        .put_web_state(&state(WebStateKind::SsoSession, "sso"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 {
            h.store.clone()
        } else {
            other.store.clone()
        };
        let mark = state(WebStateKind::SamlRequestSeen, "request-id");
        tasks.push(tokio::spawn(async move {
            let taken = s
                .take_web_state(WebStateKind::AuthCode, "code", 1000)
                .await
                .unwrap()
                .is_some();
            let claimed = s.claim_web_state(&mark, 1000).await.unwrap();
            let updated = s
                .update_web_state(
                    WebStateKind::SsoSession,
                    "sso",
                    "v1",
                    &format!("v{i}"),
                    1000,
                )
                .await
                .unwrap();
            (taken, claimed, updated)
        }));
    }
    let (mut taken, mut claimed, mut updated) = (0, 0, 0);
    for t in tasks {
        let (a, b, c) = t.await.unwrap();
        taken += usize::from(a);
        claimed += usize::from(b);
        updated += usize::from(c);
    }
    assert_eq!((taken, claimed, updated), (1, 1, 1));
    other.close().await;
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
