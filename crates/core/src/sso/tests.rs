//! The SSO rules on a fake clock and an in-memory store.

use super::*;
use crate::clock::FakeClock;
use crate::model::SamlParticipant;
use crate::testing::MemStore;

const LIMITS: SessionLimits = SessionLimits {
    idle: 600,
    lifetime: 3600,
};

fn sso() -> (Sso, Arc<MemStore>, FakeClock) {
    let mem = Arc::new(MemStore::new());
    let clock = FakeClock::at(1_000_000);
    let sso = Sso::new(
        mem.clone(),
        mem.clone(),
        Arc::new(clock.clone()),
        Arc::new(crate::rng::OsRng),
    );
    (sso, mem, clock)
}

fn sign_in<'a>(existing: Option<&'a str>, user: &'a str, app: &'a str) -> SignIn<'a> {
    SignIn {
        existing,
        user,
        realm: "corp",
        app,
        mfa: false,
        client_ip: "192.0.2.1".into(),
        user_agent: "test".into(),
    }
}

#[tokio::test]
async fn a_second_sign_in_of_the_same_user_gains_the_application_under_a_new_key() {
    let (sso, _, clock) = sso();
    let first = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    assert_eq!(first.expires_at, 1_000_000 + 3600);
    assert!(first.ended.is_none());
    clock.advance(100);
    let mut again = sign_in(Some(&first.key), "alice", "wiki");
    again.mfa = true;
    let second = sso.sign_in(again, LIMITS).await.unwrap();
    assert_ne!(second.key, first.key, "a new key at every sign-in");
    assert_eq!(
        second.expires_at, first.expires_at,
        "the session keeps its end"
    );
    assert_eq!(second.session.apps, ["vpn", "wiki"]);
    assert_eq!(second.session.mfa_apps, ["wiki"]);
    assert_eq!(second.session.sid, first.session.sid);
    assert_eq!(second.session.auth_time, 1_000_100);
    assert!(sso.session(&first.key, LIMITS).await.unwrap().is_none());
    let (live, end) = sso.session(&second.key, LIMITS).await.unwrap().unwrap();
    assert_eq!((live, end), (second.session, second.expires_at));
}

#[tokio::test]
async fn another_users_sign_in_ends_the_browsers_session() {
    let (sso, _, _) = sso();
    let alice = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    let bob = sso
        .sign_in(sign_in(Some(&alice.key), "bob", "vpn"), LIMITS)
        .await
        .unwrap();
    assert_eq!(bob.ended.map(|s| s.user).as_deref(), Some("alice"));
    assert_eq!(bob.session.apps, ["vpn"]);
    assert_ne!(bob.session.sid, alice.session.sid);
    assert!(sso.session(&alice.key, LIMITS).await.unwrap().is_none());
    assert!(sso.sessions_of("corp", "alice").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_idle_session_serves_nothing_and_a_touch_keeps_it() {
    let (sso, _, clock) = sso();
    let s = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    clock.advance(500);
    assert!(sso.touch(&s.key).await.unwrap());
    clock.advance(500);
    assert!(sso.session(&s.key, LIMITS).await.unwrap().is_some());
    clock.advance(600);
    assert!(sso.session(&s.key, LIMITS).await.unwrap().is_none());
    // Past its end it is gone altogether.
    clock.advance(3600);
    assert!(!sso.touch(&s.key).await.unwrap());
}

#[tokio::test]
async fn relying_parties_are_remembered_once_each() {
    let (sso, _, _) = sso();
    let s = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    let sp = |index: &str| SamlParticipant {
        sp: "wiki".into(),
        name_id: "alice".into(),
        name_id_format: "unspecified".into(),
        session_index: index.into(),
    };
    assert!(sso.remember_saml(&s.key, sp("1")).await.unwrap());
    assert!(sso.remember_saml(&s.key, sp("2")).await.unwrap());
    let (a, b) = tokio::join!(
        sso.remember_oidc(&s.key, "app-a"),
        sso.remember_oidc(&s.key, "app-b")
    );
    assert!(a.unwrap() && b.unwrap());
    assert!(sso.remember_oidc(&s.key, "app-a").await.unwrap());
    let (live, _) = sso.session(&s.key, LIMITS).await.unwrap().unwrap();
    assert_eq!(live.saml, [sp("2")]);
    assert_eq!(live.oidc, ["app-a", "app-b"]);
    assert!(!sso.remember_oidc("no such key", "app-a").await.unwrap());
}

#[tokio::test]
async fn a_session_ends_once_and_is_audited() {
    let (sso, mem, _) = sso();
    let s = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    let listed = sso.sessions_of("CORP", "Alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, key_hash(&s.key));
    let ended = sso.end(&s.key, "signed out").await.unwrap().unwrap();
    assert_eq!(ended.user, "alice");
    assert!(sso.end(&s.key, "signed out").await.unwrap().is_none());
    let audit = mem.audit_records();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "sso_logout");
    assert!(
        audit[0].reason.contains("signed out"),
        "{}",
        audit[0].reason
    );
}

#[tokio::test]
async fn ended_sessions_with_oidc_clients_are_taken_once() {
    let (sso, mem, _) = sso();
    let s = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    let mut told = s.session.clone();
    told.oidc.push("app".into());
    sso.queue_logouts(&[s.session.clone(), told.clone()])
        .await
        .unwrap();
    assert_eq!(
        mem.count(WebStateKind::BackchannelDue),
        1,
        "only sessions with clients"
    );
    assert_eq!(sso.take_due_logouts().await.unwrap(), [told]);
    assert!(sso.take_due_logouts().await.unwrap().is_empty());
}

fn code() -> AuthCode {
    AuthCode {
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        // RFC 7636 appendix B.
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: None,
        user: "alice".into(),
        realm: "corp".into(),
        scope: "openid".into(),
        auth_time: 1,
        sid: None,
    }
}
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[test]
fn pkce_s256_is_rfc_7636s_example() {
    assert!(pkce_matches(VERIFIER, &code().code_challenge));
    assert!(!pkce_matches("short", &code().code_challenge));
    assert!(!pkce_matches(
        &VERIFIER.replace('d', "e"),
        &code().code_challenge
    ));
}

#[tokio::test]
async fn a_code_is_traded_once_and_expires() {
    let (sso, _, clock) = sso();
    let value = sso.issue_code(&code(), 60).await.unwrap();
    assert_eq!(sso.redeem_code(&value).await.unwrap(), Some(code()));
    assert_eq!(sso.redeem_code(&value).await.unwrap(), None);
    let late = sso.issue_code(&code(), 60).await.unwrap();
    clock.advance(60);
    assert_eq!(sso.redeem_code(&late).await.unwrap(), None);
}

#[tokio::test]
async fn a_code_presented_again_by_its_client_revokes_what_it_bought_once() {
    let (sso, _, _) = sso();
    let value = sso.issue_code(&code(), 60).await.unwrap();
    sso.redeem_code(&value).await.unwrap();
    let spent = SpentCode {
        client_id: "app".into(),
        code_challenge: code().code_challenge,
        jti: "jti-1".into(),
        user: "alice".into(),
        realm: "corp".into(),
        expires_at: 1_000_000 + 300,
    };
    sso.keep_spent_code(&value, &spent).await.unwrap();
    let refresh = sso
        .issue_refresh_token("app", ("alice", "corp"), "openid", 1_000_000 + 900)
        .await
        .unwrap();
    // Another client, or the right one without the verifier: nothing happens.
    assert!(
        sso.code_presented_again(&value, "other", VERIFIER)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        sso.code_presented_again(&value, "app", "x".repeat(43).as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!sso.access_revoked("jti-1").await.unwrap());
    let reused = sso
        .code_presented_again(&value, "app", VERIFIER)
        .await
        .unwrap();
    assert_eq!(
        reused,
        Some(ReusedCode {
            spent,
            revoked: true
        })
    );
    assert!(sso.access_revoked("jti-1").await.unwrap());
    assert!(
        sso.use_refresh_token(&refresh, "app")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        sso.code_presented_again(&value, "app", VERIFIER)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_spent_refresh_token_presented_again_revokes_the_clients_others_for_the_user() {
    let (sso, _, clock) = sso();
    let first = sso
        .issue_refresh_token("app", ("alice", "corp"), "openid", 1_000_000 + 900)
        .await
        .unwrap();
    let other = sso
        .issue_refresh_token("app", ("alice", "corp"), "openid", 1_000_000 + 900)
        .await
        .unwrap();
    let bobs = sso
        .issue_refresh_token("app", ("bob", "corp"), "openid", 1_000_000 + 900)
        .await
        .unwrap();
    assert!(
        sso.use_refresh_token(&first, "other")
            .await
            .unwrap()
            .is_none()
    );
    let used = sso.use_refresh_token(&first, "app").await.unwrap().unwrap();
    assert_eq!(
        (used.username.as_str(), used.scope.as_str()),
        ("alice", "openid")
    );
    assert!(
        sso.use_refresh_token(&first, "app")
            .await
            .unwrap()
            .is_none()
    );
    let since = clock.now_millis();
    assert!(
        !sso.reuse_marked_since("app", ("alice", "corp"), since)
            .await
            .unwrap()
    );
    assert!(
        sso.refresh_presented_again(&other, "app")
            .await
            .unwrap()
            .is_none(),
        "not spent"
    );
    let (spent, revoked) = sso
        .refresh_presented_again(&first, "app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((spent.username.as_str(), revoked), ("alice", 1));
    assert!(
        sso.reuse_marked_since("app", ("alice", "corp"), since)
            .await
            .unwrap()
    );
    assert!(
        !sso.reuse_marked_since("app", ("alice", "corp"), since + 1)
            .await
            .unwrap()
    );
    assert!(
        sso.use_refresh_token(&other, "app")
            .await
            .unwrap()
            .is_none()
    );
    assert!(sso.use_refresh_token(&bobs, "app").await.unwrap().is_some());
}

#[tokio::test]
async fn a_replay_mark_holds_until_its_end() {
    let (sso, _, clock) = sso();
    assert!(
        sso.first_use(Once::SamlRequest, "sp\0id-1", 1_000_010)
            .await
            .unwrap()
    );
    assert!(
        !sso.first_use(Once::SamlRequest, "sp\0id-1", 1_000_020)
            .await
            .unwrap()
    );
    assert!(
        sso.first_use(Once::PayloadNonce, "sp\0id-1", 1_000_010)
            .await
            .unwrap(),
        "kinds apart"
    );
    clock.advance(10);
    assert!(
        sso.first_use(Once::SamlRequest, "sp\0id-1", 1_000_030)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn flows_and_saml_logouts_are_kept_read_and_ended() {
    let (sso, _, clock) = sso();
    sso.keep_flow("k", &vec!["a".to_string()], 1_000_100)
        .await
        .unwrap();
    let (flow, end) = sso.flow::<Vec<String>>("k").await.unwrap().unwrap();
    assert_eq!((flow, end), (vec!["a".to_string()], 1_000_100));
    assert!(
        sso.flow::<u32>("k").await.unwrap().is_none(),
        "another shape reads as none"
    );
    assert!(sso.end_flow("k").await.unwrap());
    assert!(sso.flow::<Vec<String>>("k").await.unwrap().is_none());
    sso.keep_saml_logout("k", &7u32, 1_000_010).await.unwrap();
    assert_eq!(sso.saml_logout::<u32>("k").await.unwrap(), Some(7));
    clock.advance(10);
    assert_eq!(sso.saml_logout::<u32>("k").await.unwrap(), None);
}

/// A store where another tab changes the session between this request's read and its write,
/// once.
struct OtherTab {
    mem: MemStore,
    pending: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl WebStateStore for OtherTab {
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.mem.revoke_token(jti, expires_at).await
    }
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.mem.token_revoked(jti).await
    }
    async fn put_refresh_token(&self, token: &crate::store::RefreshToken) -> StoreResult<()> {
        self.mem.put_refresh_token(token).await
    }
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<crate::store::RefreshToken>> {
        self.mem.use_refresh_token(hash, client_id, now).await
    }
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<crate::store::RefreshToken>> {
        self.mem.spent_refresh_token(hash, client_id, now).await
    }
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64> {
        self.mem
            .revoke_refresh_tokens(client_id, username, realm, now)
            .await
    }
    async fn put_web_state(&self, state: &WebState) -> StoreResult<()> {
        self.mem.put_web_state(state).await
    }
    async fn claim_web_state(&self, state: &WebState, now: i64) -> StoreResult<bool> {
        self.mem.claim_web_state(state, now).await
    }
    async fn web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        self.mem.web_state(kind, key_hash, now).await
    }
    async fn take_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        self.mem.take_web_state(kind, key_hash, now).await
    }
    async fn web_states_of(
        &self,
        kind: WebStateKind,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<WebState>> {
        self.mem.web_states_of(kind, subject, now).await
    }
    async fn update_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        was: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<bool> {
        if self
            .pending
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let mut other: crate::model::SsoSession = serde_json::from_str(was).unwrap();
            other.oidc.push("other-tab".into());
            let other = serde_json::to_string(&other).unwrap();
            assert!(
                self.mem
                    .update_web_state(kind, key_hash, was, &other, now)
                    .await?
            );
        }
        self.mem
            .update_web_state(kind, key_hash, was, data, now)
            .await
    }
    async fn delete_web_state(&self, kind: WebStateKind, key_hash: &str) -> StoreResult<bool> {
        self.mem.delete_web_state(kind, key_hash).await
    }
}

#[tokio::test]
async fn a_change_made_meanwhile_by_another_tab_is_kept() {
    let store = Arc::new(OtherTab {
        mem: MemStore::new(),
        pending: false.into(),
    });
    let clock = FakeClock::at(1_000_000);
    let sso = Sso::new(
        store.clone(),
        Arc::new(MemStore::new()),
        Arc::new(clock),
        Arc::new(crate::rng::OsRng),
    );
    let s = sso
        .sign_in(sign_in(None, "alice", "vpn"), LIMITS)
        .await
        .unwrap();
    store
        .pending
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sso.remember_oidc(&s.key, "app").await.unwrap());
    let (live, _) = sso.session(&s.key, LIMITS).await.unwrap().unwrap();
    assert_eq!(live.oidc, ["other-tab", "app"], "neither write lost");
}
