//! The login state machine on a fake clock and the in-memory store: no database, no sockets.

use super::*;
use crate::admin::{Actor, Admin, EnrollInput, NewUserInput};
use crate::clock::FakeClock;
use crate::ids::TransactionId;
use crate::model::{Application, Factor, Method};
use crate::store::TokenStore;
use crate::testing::MemStore;
use serde_json::json;
use tessera_otp::{Algorithm, Digits};

/// RFC 6238's test seed.
const SEED: &[u8] = b"12345678901234567890";
const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const START: i64 = 1_700_000_010;

struct Setup {
    engine: Arc<Engine>,
    admin: Admin,
    store: Arc<MemStore>,
    clock: FakeClock,
}

async fn setup() -> Setup {
    let clock = FakeClock::at(START);
    let (engine, store) = crate::testing::engine(clock.clone()).await.unwrap();
    let admin = Admin::new(engine.clone());
    let user: NewUserInput =
        serde_json::from_value(json!({"username": "alice", "password": "alice-password"})).unwrap();
    admin.create_user(&Actor::cli(), user).await.unwrap();
    let token: EnrollInput = serde_json::from_value(
        json!({"type": "totp", "user": "alice", "secret": SEED_B32, "serial": "TOTP0001"}),
    )
    .unwrap();
    admin.enroll(&Actor::cli(), token).await.unwrap();
    Setup {
        engine,
        admin,
        store,
        clock,
    }
}

impl Setup {
    /// The TOTP code of the seed `steps` periods from now.
    fn code(&self, steps: i64) -> String {
        let t = u64::try_from(self.clock.now() + steps * 30).unwrap() / 30;
        format!(
            "{:06}",
            tessera_otp::hotp(SEED, t, Digits::Six, Algorithm::Sha1)
        )
    }

    async fn login(&self, pass: &str, tx: Option<&TransactionId>) -> Outcome {
        let req = AuthRequest {
            user: Some("alice".into()),
            realm: None,
            pass: pass.to_string().into(),
            transaction_id: tx.cloned(),
            serial: None,
            token_kind: None,
            otp_only: false,
            fallback_channel: None,
            code_first: false,
        };
        self.engine
            .authenticate(&req, &RequestCtx::new(Door::Validate))
            .await
            .unwrap()
    }

    /// Makes the default application password then OTP.
    async fn two_factors(&self) {
        let mut app: Application = self
            .engine
            .snapshot()
            .application(&crate::ids::AppName::from("default"))
            .unwrap()
            .clone();
        app.factors = vec![
            Factor::of(vec![Method::Password]),
            Factor::of(vec![Method::SoftOtp]),
        ];
        self.admin.put(&Actor::cli(), app).await.unwrap();
    }
}

fn rejected(o: &Outcome) -> Option<RejectReason> {
    match o {
        Outcome::Reject(r) => Some(r.reason),
        _ => None,
    }
}

#[tokio::test]
async fn a_code_is_accepted_once_and_the_next_periods_code_after() {
    let s = setup().await;
    let code = s.code(0);
    assert!(matches!(s.login(&code, None).await, Outcome::Accept(_)));
    assert_eq!(
        rejected(&s.login(&code, None).await),
        Some(RejectReason::OtpReused)
    );
    s.clock.advance(30);
    assert!(matches!(
        s.login(&s.code(0), None).await,
        Outcome::Accept(_)
    ));
    let audit = s.store.audit_records();
    let results: Vec<&str> = audit
        .iter()
        .filter(|r| r.action == "authenticate")
        .map(|r| r.result.as_str())
        .collect();
    assert_eq!(results, ["accept", "reject", "accept"]);
}

#[tokio::test]
async fn a_two_factor_login_finishes_its_transaction_once() {
    let s = setup().await;
    s.two_factors().await;
    let Outcome::Challenge(c) = s.login("alice-password", None).await else {
        panic!("the password alone is not enough");
    };
    let tx = c.transaction_id.clone();
    assert_eq!(
        rejected(&s.login("000000", Some(&tx)).await),
        Some(RejectReason::WrongOtp)
    );
    let code = s.code(0);
    assert!(matches!(
        s.login(&code, Some(&tx)).await,
        Outcome::Accept(_)
    ));
    // Finished: the transaction answers nothing more.
    s.clock.advance(30);
    assert_eq!(
        rejected(&s.login(&s.code(0), Some(&tx)).await),
        Some(RejectReason::BadTransaction)
    );
}

#[tokio::test]
async fn a_transaction_ends_with_its_validity() {
    let s = setup().await;
    s.two_factors().await;
    let Outcome::Challenge(c) = s.login("alice-password", None).await else {
        panic!("the password alone is not enough");
    };
    let validity = i64::from(s.engine.snapshot().settings.challenge_validity_seconds);
    s.clock.advance(validity + 1);
    assert_eq!(
        rejected(&s.login(&s.code(0), Some(&c.transaction_id)).await),
        Some(RejectReason::BadTransaction)
    );
}

#[tokio::test]
async fn wrong_codes_lock_the_account_until_its_lock_period_ends() {
    let s = setup().await;
    let settings = s.engine.snapshot().settings.clone();
    for _ in 0..settings.max_otp_attempts {
        assert_eq!(
            rejected(&s.login("000000", None).await),
            Some(RejectReason::WrongOtp)
        );
    }
    assert_eq!(
        rejected(&s.login(&s.code(0), None).await),
        Some(RejectReason::Locked),
        "the right code is not even checked"
    );
    s.clock
        .advance(i64::from(settings.lock_period_minutes) * 60);
    assert!(matches!(
        s.login(&s.code(0), None).await,
        Outcome::Accept(_)
    ));
}

#[tokio::test]
async fn wrong_codes_use_up_the_tokens_budget_and_then_the_right_one_is_refused() {
    let s = setup().await;
    let off = serde_json::from_value(json!({"account_locking": false})).unwrap();
    s.admin.update_settings(&Actor::cli(), off).await.unwrap();
    s.engine.refresh().await.unwrap();
    let serial = crate::ids::Serial::from("TOTP0001");
    let max = s.store.token(&serial).await.unwrap().unwrap().max_fail;
    for _ in 0..max {
        assert_eq!(
            rejected(&s.login("000000", None).await),
            Some(RejectReason::WrongOtp)
        );
    }
    let token = s.store.token(&serial).await.unwrap().unwrap();
    assert_eq!(token.fail_count, max);
    assert_eq!(token.fail_exceeded_at, Some(START));
    assert_eq!(
        rejected(&s.login(&s.code(0), None).await),
        Some(RejectReason::TokenLocked),
        "a token at its fail limit accepts nothing"
    );
}

#[tokio::test]
async fn an_unknown_user_is_rejected_and_audited() {
    let s = setup().await;
    let req = AuthRequest {
        user: Some("mallory".into()),
        realm: None,
        pass: "123456".to_string().into(),
        transaction_id: None,
        serial: None,
        token_kind: None,
        otp_only: false,
        fallback_channel: None,
        code_first: false,
    };
    let out = s
        .engine
        .authenticate(&req, &RequestCtx::new(Door::Radius))
        .await
        .unwrap();
    assert_eq!(rejected(&out), Some(RejectReason::UnknownUser));
    let last = s.store.audit_records().pop().unwrap();
    assert_eq!(
        (
            last.user.as_deref(),
            last.door.as_str(),
            last.result.as_str()
        ),
        (Some("mallory"), "radius", "reject")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_sent_twenty_times_at_once_is_accepted_once() {
    let s = Arc::new(setup().await);
    let code = s.code(0);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move { s.login(&code, None).await }));
    }
    let mut accepted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Outcome::Accept(_)) {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
}
