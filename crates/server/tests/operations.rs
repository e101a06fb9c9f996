//! Operations: health, readiness and metrics endpoints; the per-node user cache.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use tessera_core::ids::SourceName;
use tessera_core::model::{TokenKind, UserPatch};
use tessera_core::store::UserStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    const TOKEN: &str = "a-metrics-token-for-the-tests";
    let s = TestServer::start_configured(Backend::Sqlite, Some(1_800_000_010), |c| {
        c.metrics_token = Some(zeroize::Zeroizing::new(TOKEN.into()));
    })
    .await;
    s.add_user("alice", None).await;
    s.enroll("alice", TokenKind::Totp, "TOTPOPS", None).await;
    let get = |path: &'static str| {
        let s = &s;
        async move {
            let res = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (StatusCode::OK, "ok\n".to_string()));
    assert_eq!(
        get("/readyz").await,
        (StatusCode::OK, "ready\n".to_string())
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.totp(0))]).await.0,
        "ACCEPT"
    );
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", "000000")]).await.0,
        "REJECT"
    );
    // /metrics is public no more (attack run, low: it showed accept/reject counts per door):
    // on the HTTP listener it needs the metrics token, and Prometheus reads the metrics
    // listener (loopback by default).
    let (status, _) = get("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let with_token = |token: &'static str| {
        let s = &s;
        async move {
            let res = s
                .http
                .get(format!("{}/metrics", s.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    assert_eq!(
        with_token("a-metrics-token-for-the-test!").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, on_http) = with_token(TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    let metrics_addr = s.running.as_ref().unwrap().metrics_addr.unwrap();
    assert!(metrics_addr.ip().is_loopback());
    let res = s
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        on_http.contains("tessera_auth_decisions_total"),
        "{on_http}"
    );
    for needle in [
        "tessera_http_requests_total{route=\"/validate/check\",method=\"POST\",status=\"200\"}",
        "tessera_auth_decisions_total{door=\"validate\",result=\"accept\"}",
        "tessera_auth_decisions_total{door=\"validate\",result=\"reject\"}",
        "tessera_http_request_duration_seconds_bucket{route=\"/validate/check\",le=\"0.005\"}",
        "tessera_auth_duration_seconds_count{door=\"validate\",result=\"accept\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Responses carry strict headers.
    let res = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    s.stop().await;

    // Without a token the HTTP listener does not serve metrics at all.
    let s = TestServer::start(Backend::Sqlite, None).await;
    let res = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cache_keeps_users_for_its_lifetime() {
    let s = TestServer::start(Backend::Sqlite, Some(1_800_000_010)).await;
    s.add_user("alice", None).await;
    s.enroll("alice", TokenKind::Hotp, "OATHCACHE", None).await;
    s.set(json!({"user_cache_seconds": 60})).await;
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.hotp(0))]).await.0,
        "ACCEPT"
    );
    // Disabled behind this node's back (as another node or the CLI would): the cached user is
    // still used until the cache entry expires.
    let store = s.store().clone();
    let alice = store
        .local_user_by_name(&SourceName::from("local"), "alice")
        .await
        .unwrap()
        .unwrap();
    store
        .update_local_user(
            &alice.user.source,
            &alice.user.id,
            &UserPatch {
                enabled: Some(false),
                ..UserPatch::default()
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.hotp(1))]).await.0,
        "ACCEPT"
    );
    s.advance(61);
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.hotp(2))]).await.0,
        "REJECT"
    );
    assert!(
        s.audit("authenticate").await[0]
            .reason
            .starts_with("user disabled (attempt ")
    );
    // With the cache off, a change is seen at once.
    s.set(json!({"user_cache_seconds": 0})).await;
    store
        .update_local_user(
            &alice.user.source,
            &alice.user.id,
            &UserPatch {
                enabled: Some(true),
                ..UserPatch::default()
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        s.check(&[("user", "alice"), ("pass", &s.hotp(3))]).await.0,
        "ACCEPT"
    );
    s.stop().await;
}
