//! Who calls: client authentication (HTTP Basic or the body; public clients by id alone), the
//! per-client rate limit, the required front-end header, and the audit of refusals.

use super::*;
use crate::HttpState;
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use std::collections::HashMap;
use std::net::SocketAddr;
use tessera_core::model::{ApiClient, AuditRecord};

/// RFC 6750's answer to a token whose client lacks `scope`.
pub(super) fn insufficient_scope(scope: &str) -> OAuthError {
    OAuthError::InsufficientScope(format!(
        "this client's tokens do not carry the scope {scope}"
    ))
}

pub(super) fn invalid_client(description: &str) -> OAuthError {
    OAuthError::InvalidClient(description.into())
}

pub(super) fn form_once(body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    crate::web::pairs_once(body)
        .map_err(|()| OAuthError::InvalidRequest("a parameter is repeated".into()))
}

/// A call authenticated by an API client: its parameters, the caller's address and the client.
pub(super) async fn client_call(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(HashMap<String, String>, std::net::IpAddr, ApiClient), OAuthError> {
    let params = form_once(body)?;
    let ip = state.client_ip(peer, headers, None);
    let client = authenticate_client(state, headers, &params, ip, false).await?;
    Ok((params, ip, client))
}

/// The calling client: HTTP Basic (RFC 6749 §2.3.1) or `client_id`/`client_secret` in the
/// body, not both. `Err` is the answer to send; failures are audited.
/// With `public_ok` (the token endpoint's code and refresh grants), a public OIDC client names
/// itself by `client_id` alone (`token_endpoint_auth_method` `none`): PKCE, checked with the
/// code, and the refresh token it holds are its proof.
pub(super) async fn authenticate_client(
    state: &HttpState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    peer: std::net::IpAddr,
    public_ok: bool,
) -> Result<ApiClient, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest)
        })
        .map(|b64| {
            data_encoding::BASE64
                .decode(b64.trim().as_bytes())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| {
                    s.split_once(':').map(|(id, secret)| {
                        let dec = |x: &str| {
                            percent_encoding::percent_decode_str(&x.replace('+', " "))
                                .decode_utf8_lossy()
                                .into_owned()
                        };
                        (dec(id), dec(secret))
                    })
                })
        });
    let body = (params.get("client_id"), params.get("client_secret"));
    let (id, secret) = match (basic, body) {
        // Two ways of authenticating at once (a body client_id naming the same client as
        // Basic is harmless and allowed).
        (Some(_), (_, Some(_))) => {
            return Err(OAuthError::InvalidRequest(
                "authenticate the client one way only: HTTP Basic or the request body".into(),
            ));
        }
        (Some(Some((id, secret))), (body_id, None)) => {
            if body_id.is_some_and(|b| *b != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id differs from the one authenticated".into(),
                ));
            }
            (id, secret)
        }
        (Some(None), _) => return Err(invalid_client("malformed Basic credentials")),
        (None, (Some(id), Some(secret))) => (id.clone(), secret.clone()),
        (None, (Some(id), None)) if public_ok => {
            return public_client(state, id, peer).await;
        }
        (None, _) => return Err(invalid_client("client authentication required")),
    };
    // One answer for every failure, so that a right secret is not confirmed from an address
    // the client may not call from.
    const REFUSED: &str = "unknown client, wrong secret or address not allowed";
    let snap = state.engine.snapshot();
    let refuse = |why: &'static str, name: String| async move {
        audit(state, &name, "oauth_client_auth", "error", why, peer).await;
        Err(invalid_client(REFUSED))
    };
    let Some(client) = snap.api_client_by_id(&id).cloned() else {
        // As long as a real check.
        std::hint::black_box(ApiClient::hash_secret(&secret));
        return refuse(
            "unknown client_id",
            format!("unknown:{}", id.chars().take(64).collect::<String>()),
        )
        .await;
    };
    if !client.allows_ip(peer) {
        return refuse("address not in the client's allow-list", client.name).await;
    }
    if !client.secret_matches(&secret) {
        return refuse("wrong client secret", client.name).await;
    }
    Ok(client)
}

/// A public client named by its `client_id` alone; a confidential client, or an unknown one,
/// is refused as a wrong secret is (and costs what a secret's check costs).
pub(super) async fn public_client(
    state: &HttpState,
    id: &str,
    peer: std::net::IpAddr,
) -> Result<ApiClient, OAuthError> {
    const REFUSED: &str = "unknown client, wrong secret or address not allowed";
    let snap = state.engine.snapshot();
    let found = snap.api_client_by_id(id).cloned();
    std::hint::black_box(ApiClient::hash_secret(id));
    let (why, name) = match found {
        Some(c) if c.public && c.allows_ip(peer) => return Ok(c),
        Some(c) if c.public => ("address not in the client's allow-list", c.name),
        Some(c) => ("no client secret (a confidential client)", c.name),
        None => (
            "unknown client_id",
            format!("unknown:{}", id.chars().take(64).collect::<String>()),
        ),
    };
    audit(state, &name, "oauth_client_auth", "error", why, peer).await;
    Err(invalid_client(REFUSED))
}

pub(super) async fn audit(
    state: &HttpState,
    client: &str,
    action: &str,
    result: &str,
    reason: &str,
    ip: std::net::IpAddr,
) {
    let engine = &state.engine;
    let record = AuditRecord::event(
        engine.clock().now_millis(),
        "api",
        format!("api:{client}"),
        action,
    )
    .client(Some(ip.to_string()), None)
    .ended(result, reason);
    if let Err(e) = engine.audit(&record).await {
        tracing::warn!(error = %e, "OAuth audit record not written");
    }
}

/// 429 when the client made more requests than its rate limit allows this minute.
pub(super) async fn rate_limited(
    state: &HttpState,
    client: &ApiClient,
    ip: std::net::IpAddr,
) -> Option<OAuthError> {
    let minute = state.engine.clock().now() / 60;
    let over = state.oauth_rates.over(
        client.client_id.clone(),
        minute,
        client.rate_limit_per_minute,
    );
    if !over {
        return None;
    }
    audit(
        state,
        &client.name,
        "oauth_token",
        "error",
        "rate limit",
        ip,
    )
    .await;
    Some(OAuthError::TooManyRequests {
        why: "too many requests from this client; try again in a minute".into(),
        retry_after: 60,
    })
}

/// 403 for a request that sends codes without the header the `otp_required_header` setting
/// names (seed 003's "reject non-CF calls": only the CDN in front adds it).
pub(super) fn lacks_required_header(state: &HttpState, headers: &HeaderMap) -> Option<OAuthError> {
    let settings = &state.engine.snapshot().settings;
    let name = settings
        .required_header()
        .map(|(name, _)| name)
        .unwrap_or_default();
    let values = headers.get_all(name.as_str()).iter().map(|v| v.as_bytes());
    let ok = settings.required_header_present(values);
    (!ok).then(|| {
        OAuthError::AccessDenied(
            "this request must come through the configured front end (required header missing)"
                .into(),
        )
    })
}
