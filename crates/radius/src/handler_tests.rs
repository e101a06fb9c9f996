//! The handler without sockets or a database: packets in, replies out, on the in-memory store
//! and a fake clock (the UDP loop and RadSec only carry these bytes).

use super::*;
use serde_json::json;
use tessera_core::admin::{Actor, Admin};
use tessera_core::clock::FakeClock;
use tessera_otp::{Algorithm, Digits};
use tessera_radius_proto::{encode_request, hide_password, verify_reply};

const SECRET: &str = "a-long-shared-secret";
const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const NAS: &str = "192.0.2.10:40000";

async fn handler() -> (Handler, FakeClock) {
    let clock = FakeClock::at(1_700_000_010);
    let (engine, _) = tessera_core::testing::engine(clock.clone()).await.unwrap();
    let admin = Admin::new(engine.clone());
    let user =
        serde_json::from_value(json!({"username": "alice", "password": "alice-password"})).unwrap();
    admin.create_user(&Actor::cli(), user).await.unwrap();
    let token =
        serde_json::from_value(json!({"type": "totp", "user": "alice", "secret": SEED_B32}))
            .unwrap();
    admin.enroll(&Actor::cli(), token).await.unwrap();
    let client: RadiusClient = serde_json::from_value(json!({
        "name": "vpn", "device_type": "vpn", "nas_ip": ["192.0.2.10"], "secret": SECRET,
    }))
    .unwrap();
    admin.put(&Actor::cli(), client).await.unwrap();
    (Handler::new(engine), clock)
}

fn code(clock: &FakeClock) -> String {
    use tessera_core::clock::Clock;
    let step = u64::try_from(clock.now()).unwrap() / 30;
    format!(
        "{:06}",
        tessera_otp::hotp(b"12345678901234567890", step, Digits::Six, Algorithm::Sha1)
    )
}

fn request(id: u8, authenticator: [u8; 16], user: &str, password: &str, secret: &str) -> Vec<u8> {
    let hidden = hide_password(password.as_bytes(), secret.as_bytes(), &authenticator).unwrap();
    encode_request(
        Code::ACCESS_REQUEST,
        id,
        &authenticator,
        &[
            Attribute::new(attr::USER_NAME, user.as_bytes()),
            Attribute::new(attr::USER_PASSWORD, hidden),
        ],
        secret.as_bytes(),
        true,
    )
    .unwrap()
}

async fn answer(h: &Handler, raw: &[u8], authenticator: [u8; 16]) -> Option<Code> {
    let reply = h.handle(raw, NAS.parse().unwrap(), Port::Auth).await?;
    Some(
        verify_reply(&reply, &authenticator, SECRET.as_bytes(), false)
            .unwrap()
            .code,
    )
}

#[tokio::test]
async fn a_code_is_accepted_once() {
    let (h, clock) = handler().await;
    let otp = code(&clock);
    let first = request(1, [1; 16], "alice", &otp, SECRET);
    assert_eq!(answer(&h, &first, [1; 16]).await, Some(Code::ACCESS_ACCEPT));
    let again = request(2, [2; 16], "alice", &otp, SECRET);
    assert_eq!(answer(&h, &again, [2; 16]).await, Some(Code::ACCESS_REJECT));
}

#[tokio::test]
async fn a_retransmission_gets_the_same_reply_without_a_second_login() {
    let (h, clock) = handler().await;
    let raw = request(7, [7; 16], "alice", &code(&clock), SECRET);
    let first = h.handle(&raw, NAS.parse().unwrap(), Port::Auth).await;
    let again = h.handle(&raw, NAS.parse().unwrap(), Port::Auth).await;
    assert!(first.is_some());
    assert_eq!(first, again, "the cached reply, not a reused-code reject");
}

#[tokio::test]
async fn packets_the_handler_must_not_answer_get_nothing() {
    let (h, clock) = handler().await;
    let otp = code(&clock);
    // Another secret (the authenticators do not check), an unknown client, the accounting
    // port, garbage.
    let wrong_secret = request(3, [3; 16], "alice", &otp, "another-shared-secret");
    assert_eq!(answer(&h, &wrong_secret, [3; 16]).await, None);
    let raw = request(4, [4; 16], "alice", &otp, SECRET);
    let stranger = h
        .handle(&raw, "198.51.100.7:1812".parse().unwrap(), Port::Auth)
        .await;
    assert!(stranger.is_none());
    assert!(
        h.handle(&raw, NAS.parse().unwrap(), Port::Acct)
            .await
            .is_none()
    );
    assert!(
        h.handle(&[1, 2, 3], NAS.parse().unwrap(), Port::Auth)
            .await
            .is_none()
    );
    // None of them spent the code.
    assert_eq!(answer(&h, &raw, [4; 16]).await, Some(Code::ACCESS_ACCEPT));
}
