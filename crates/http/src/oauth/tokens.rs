//! Tokens presented back: verification for other doors, introspection (RFC 7662) and
//! revocation (RFC 7009).

use super::*;
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tessera_core::model::ApiClient;

/// The agent whose access token (`aud: tessera`, role AGENT: the client-credentials grant)
/// `token` is, with the token's scopes, if it is active; for callers of other doors
/// (`/validate/*`). A user's token (role USER) is no agent's, though its client's.
pub(crate) async fn agent_of_token(
    state: &HttpState,
    token: &str,
) -> Option<(ApiClient, Vec<String>)> {
    let claims = active_claims(state, token)
        .await
        .filter(|c| c["aud"] == "tessera" && c["role"] == "AGENT")?;
    let client = state
        .engine
        .snapshot()
        .api_client_by_id(claims["client_id"].as_str()?)?
        .clone();
    let scopes = claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Some((client, scopes))
}

/// The claims of an active token: signed by us, unexpired, not revoked.
pub(crate) async fn active_claims(state: &HttpState, token: &str) -> Option<Value> {
    let signer = signer(state).await.ok()?;
    let claims = signer.verify(token)?;
    let now = state.engine.clock().now();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return None;
    }
    // A deleted client's tokens end with it.
    state
        .engine
        .snapshot()
        .api_client_by_id(claims["client_id"].as_str()?)?;
    let jti = claims["jti"].as_str()?;
    match state.engine.sso().access_revoked(jti).await {
        Ok(false) => Some(claims),
        _ => None,
    }
}

pub(super) async fn introspect(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (params, _ip, client) = client_call(&state, peer, &headers, &body).await?;
    if !client.has_scope("introspect") {
        return Err(insufficient_scope("introspect"));
    }
    let Some(token) = params.get("token") else {
        return Err(OAuthError::InvalidRequest("token is missing".into()));
    };
    let answer = match active_claims(&state, token)
        .await
        .filter(|c| c["aud"] == "tessera")
    {
        Some(mut c) => {
            if let Some(obj) = c.as_object_mut() {
                obj.insert("active".into(), Value::Bool(true));
                obj.insert("token_type".into(), Value::String("Bearer".into()));
            }
            c
        }
        None => json!({"active": false}),
    };
    let mut res = axum::Json(answer).into_response();
    no_store(&mut res);
    Ok(res)
}

pub(super) async fn revoke(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (params, ip, client) = client_call(&state, peer, &headers, &body).await?;
    let Some(token) = params.get("token") else {
        return Err(OAuthError::InvalidRequest("token is missing".into()));
    };
    if signer(&state).await.is_err() {
        return Err(OAuthError::unavailable());
    }
    // RFC 7009: the answer is 200 whether or not the token was valid; a client revokes only
    // its own tokens.
    if let Some(claims) = active_claims(&state, token).await
        && claims["client_id"] == client.client_id.as_str()
        && let (Some(jti), Some(exp)) = (claims["jti"].as_str(), claims["exp"].as_i64())
    {
        if let Err(e) = state.engine.sso().revoke_access(jti, exp).await {
            tracing::error!(error = %e, "token not revoked");
            return Err(OAuthError::unavailable());
        }
        audit(
            &state,
            &client.name,
            "oauth_revoke",
            "ok",
            "access token revoked",
            ip,
        )
        .await;
    }
    let mut res = StatusCode::OK.into_response();
    no_store(&mut res);
    Ok(res)
}
