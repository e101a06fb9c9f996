//! The token endpoint's grants for API clients: client credentials, password, refresh (with
//! rotation and reuse detection), and the token policy applied to what the engine decided.

use super::*;
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use tessera_core::ids::login_name_ok;
use tessera_core::model::{ApiClient, ApiClientKind};
use tessera_core::sso::{TokenAsk, TokenRole};

pub(super) async fn token(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = form_once(&body)?;
    let ip = state.client_ip(peer, &headers, None);
    let grant = params.get("grant_type").map(String::as_str).unwrap_or("");
    let public_ok = matches!(grant, "authorization_code" | "refresh_token");
    let client = authenticate_client(&state, &headers, &params, ip, public_ok).await?;
    if let Some(e) = rate_limited(&state, &client, ip).await {
        return Err(e);
    }
    match grant {
        "client_credentials" => {}
        "" => {
            return Err(OAuthError::InvalidRequest("grant_type is missing".into()));
        }
        "password" => {
            if let Some(e) = lacks_required_header(&state, &headers) {
                return Err(e);
            }
            return password_grant(&state, &client, &params, ip).await;
        }
        "refresh_token" => return refresh_grant(&state, &client, &params).await,
        "authorization_code" => return Ok(crate::web::code_grant(&state, &client, &params).await),
        _ => {
            return Err(OAuthError::UnsupportedGrantType(
                "grant_type must be client_credentials or password".into(),
            ));
        }
    }
    if client.kind != ApiClientKind::Agent {
        return Err(OAuthError::UnauthorizedClient(
            "only agent clients use client_credentials".into(),
        ));
    }
    let scopes: Vec<String> = match params.get("scope") {
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            let granted = client.granted_scopes();
            if let Some(bad) = asked.iter().find(|a| !granted.contains(a)) {
                return Err(OAuthError::InvalidScope(format!(
                    "scope '{bad}' is not granted to this client"
                )));
            }
            asked
        }
        None => client.granted_scopes(),
    };
    let signer = match signer(&state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "OAuth signing key unavailable");
            return Err(OAuthError::Server("no signing key".into()));
        }
    };
    let iss = issuer(&state)?;
    let lifetime = i64::from(client.token_lifetime_seconds);
    let now = state.engine.clock().now();
    let jti = tessera_core::rng::random_hex(state.engine.rng(), 16);
    let claims = json!({
        "iss": iss,
        "sub": client.client_id,
        "aud": "tessera",
        "client_id": client.client_id,
        "scope": scopes.join(" "),
        "role": "AGENT",
        "iat": now,
        "exp": now + lifetime,
        "jti": jti,
    });
    let access = match signer.sign(&claims) {
        Ok(t) => t,
        Err(e) => return Err(OAuthError::Server(e)),
    };
    audit(
        &state,
        &client.name,
        "oauth_token",
        "ok",
        "client_credentials token issued",
        ip,
    )
    .await;
    let mut res = axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scopes.join(" "),
    }))
    .into_response();
    no_store(&mut res);
    Ok(res)
}

/// How a token response is made.
#[derive(Clone, Copy)]
pub(super) struct Issue<'a> {
    /// The role of a token for a login that waits for an answer: `OtpPending` (the first
    /// factor's code, `/oauth/otp/generate`) or `MfaPending` (a later factor).
    pub(super) pending_role: TokenRole,
    /// The login had an MFA step (its refresh token follows the MFA settings).
    pub(super) mfa_done: bool,
    /// The end of the login's refresh tokens, when refreshing (a renewed refresh token keeps
    /// the first one's end).
    pub(super) key_expires_at: Option<i64>,
    /// The scope of a refreshed token (at most the one granted); None: the client's.
    pub(super) scope: Option<&'a str>,
    /// The user's name and realm as the request gave them, for a pending token of a login
    /// started by name alone (an unknown user's answer must look the same).
    pub(super) typed_user: Option<(&'a str, &'a str)>,
}

impl Issue<'_> {
    const PRIMARY: Issue<'static> = Issue {
        pending_role: TokenRole::MfaPending,
        mfa_done: false,
        key_expires_at: None,
        scope: None,
        typed_user: None,
    };
}

/// The refresh_token grant (user clients): a new USER token (and refresh token) for a user who
/// is still active, for the same or fewer scopes; the refresh token is spent.
pub(super) async fn refresh_grant(
    state: &HttpState,
    client: &ApiClient,
    params: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    if !matches!(client.kind, ApiClientKind::User | ApiClientKind::Oidc) {
        return Err(OAuthError::UnauthorizedClient(
            "only user and OIDC clients get refresh tokens".into(),
        ));
    }
    let Some(refresh) = params.get("refresh_token") else {
        return Err(OAuthError::InvalidRequest(
            "refresh_token is missing".into(),
        ));
    };
    let now = state.engine.clock().now();
    let spent_at = state.engine.clock().now_millis();
    let kept = match state
        .engine
        .sso()
        .use_refresh_token(refresh, &client.client_id)
        .await
    {
        Ok(Some(k)) => k,
        Ok(None) => {
            spent_refresh_again(state, client, refresh).await;
            return Err(OAuthError::InvalidGrant(
                "unknown, expired or used refresh token".into(),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "refresh token not read");
            return Err(OAuthError::unavailable());
        }
    };
    if let Some(asked) = params.get("scope")
        && asked
            .split(' ')
            .filter(|s| !s.is_empty())
            .any(|s| !kept.scope.split(' ').any(|k| k == s))
    {
        return Err(OAuthError::InvalidScope("more scope than granted".into()));
    }
    let (username, realm) = (kept.username.clone(), kept.realm.clone());
    let res = if client.kind == ApiClientKind::Oidc {
        crate::web::oidc_refresh(state, client, kept, params.get("scope")).await
    } else {
        user_refresh(state, client, kept, params, now)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    };
    // A copy of a spent refresh token came back while this one was being renewed: the new
    // one was kept before this check, so either the copy's revocation took it or it is
    // revoked here (the mark is written before that revocation).
    if res.status().is_success()
        && reuse_marked_since(state, client, &username, &realm, spent_at).await
    {
        if let Err(e) = state
            .engine
            .sso()
            .revoke_refresh_tokens(&client.client_id, &username, &realm, now)
            .await
        {
            tracing::error!(error = %e, "refresh tokens not revoked");
        }
        return Err(OAuthError::InvalidGrant(
            "unknown, expired or used refresh token".into(),
        ));
    }
    Ok(res)
}

/// The rest of a user client's refresh: a new USER token for a user still active.
pub(super) async fn user_refresh(
    state: &HttpState,
    client: &ApiClient,
    kept: tessera_core::store::RefreshToken,
    params: &HashMap<String, String>,
    now: i64,
) -> Result<Response, OAuthError> {
    // The user must still be there and active.
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(kept.realm.clone());
    let user = match state.engine.find_user(&snap, &realm, &kept.username).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => {
            return Err(OAuthError::InvalidGrant(
                "the user can no longer sign in".into(),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "refresh: user not looked up");
            return Err(OAuthError::unavailable());
        }
    };
    let outcome = tessera_core::engine::Outcome::Accept(Box::new(tessera_core::engine::Accepted {
        user,
        realm,
        application: client
            .application
            .clone()
            .unwrap_or_else(|| tessera_core::ids::AppName(String::new())),
        serial: None,
        token_kind: None,
        mfa: false,
        message: "refreshed".into(),
    }));
    let scope = params.get("scope").unwrap_or(&kept.scope);
    let issue = Issue {
        key_expires_at: Some(kept.expires_at),
        scope: Some(scope),
        ..Issue::PRIMARY
    };
    user_token(state, client, &outcome, issue).await
}

/// Whether a spent refresh token of the client for the user came back at or after
/// `since_ms`.
pub(super) async fn reuse_marked_since(
    state: &HttpState,
    client: &ApiClient,
    username: &str,
    realm: &str,
    since_ms: i64,
) -> bool {
    match state
        .engine
        .sso()
        .reuse_marked_since(&client.client_id, (username, realm), since_ms)
        .await
    {
        Ok(marked) => marked,
        // Unknown: the renewal stands (the copy's own revocation may still take it).
        Err(e) => {
            tracing::warn!(error = %e, "refresh token reuse mark not read");
            false
        }
    }
}

/// A spent refresh token presented again: every refresh token the client holds for the user
/// is spent (see [`tessera_core::sso::Sso::refresh_presented_again`]), and the reuse audited.
pub(super) async fn spent_refresh_again(state: &HttpState, client: &ApiClient, refresh: &str) {
    let (spent, revoked) = match state
        .engine
        .sso()
        .refresh_presented_again(refresh, &client.client_id)
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "reused refresh token not checked");
            return;
        }
    };
    tracing::warn!(client = %client.name, user = %spent.username, revoked,
        "a spent refresh token was presented again: the client's refresh tokens for the user are revoked");
    audit_reuse(
        state,
        client,
        "refresh_token_reused",
        (spent.username, spent.realm),
        "error",
        format!(
            "a spent refresh token was presented again: {revoked} live refresh tokens of the client for the user revoked"
        ),
    )
    .await;
}

/// A new refresh token of `client` for the user, kept by its hash until `expires_at`.
pub(crate) async fn keep_refresh_token(
    state: &HttpState,
    client: &ApiClient,
    user: &str,
    realm: &str,
    scope: &str,
    expires_at: i64,
) -> Result<String, OAuthError> {
    state
        .engine
        .sso()
        .issue_refresh_token(&client.client_id, (user, realm), scope, expires_at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "refresh token not stored");
            OAuthError::unavailable()
        })
}

/// A signed token response for a user: `USER` after every factor, `MFA_PENDING` with the
/// transaction to finish when more are asked for.
pub(super) async fn user_token(
    state: &HttpState,
    client: &ApiClient,
    outcome: &tessera_core::engine::Outcome,
    issue: Issue<'_>,
) -> Result<Response, OAuthError> {
    use tessera_core::engine::Outcome;
    let settings = state.engine.snapshot().settings.clone();
    let signer = token_signer(state).await?;
    let now = state.engine.clock().now();
    let jti = tessera_core::rng::random_hex(state.engine.rng(), 16);
    let (user, realm, role, tx, prompts) = match outcome {
        Outcome::Accept(a) => (
            a.user.username.clone(),
            a.realm.0.clone(),
            TokenRole::User,
            None,
            Vec::new(),
        ),
        Outcome::Challenge(c) => (
            issue
                .typed_user
                .map_or_else(|| c.user.username.clone(), |(u, _)| u.to_string()),
            issue
                .typed_user
                .map_or_else(|| c.realm.0.clone(), |(_, r)| r.to_string()),
            issue.pending_role,
            Some(c.transaction_id.as_str().to_string()),
            c.prompts
                .iter()
                .map(|p| json!({"type": p.kind, "message": p.message, "client_mode": p.client_mode.as_str()}))
                .collect(),
        ),
        Outcome::Reject(_) => {
            return Err(OAuthError::InvalidGrant("wrong user name, password or code".into()));
        }
    };
    let ask = TokenAsk {
        role,
        mfa_done: issue.mfa_done,
        key_expires_at: issue.key_expires_at,
        scope: issue.scope,
    };
    let granted = tessera_core::sso::grant(&settings, client, ask, now);
    let iss = issuer(state)?;
    let mut claims = json!({
        "iss": iss,
        "sub": user,
        "realm": realm,
        "aud": granted.audience,
        "client_id": client.client_id,
        "scope": granted.scope,
        "role": granted.role.as_str(),
        "iat": now,
        "exp": now + granted.lifetime,
        "jti": jti,
    });
    if let (Some(tx), Some(obj)) = (&tx, claims.as_object_mut()) {
        obj.insert("mfa_tx".into(), Value::String(tx.clone()));
    }
    let access = match signer.sign(&claims) {
        Ok(t) => t,
        Err(e) => return Err(OAuthError::Server(String::from(&e))),
    };
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": granted.lifetime,
        "scope": granted.scope,
        "role": granted.role.as_str(),
    });
    if tx.is_some()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("mfa_required".into(), Value::Bool(true));
        obj.insert("mfa".into(), Value::Array(prompts));
    }
    if let Some(expires_at) = granted.refresh_until {
        let refresh =
            keep_refresh_token(state, client, &user, &realm, &granted.scope, expires_at).await?;
        if let Some(obj) = body.as_object_mut() {
            obj.insert("refresh_token".into(), Value::String(refresh));
        }
    }
    let mut res = axum::Json(body).into_response();
    no_store(&mut res);
    Ok(res)
}

pub(super) fn request_ctx(
    client: &ApiClient,
    ip: std::net::IpAddr,
) -> tessera_core::engine::RequestCtx {
    tessera_core::engine::RequestCtx {
        client_ip: Some(ip),
        application: client.application.clone(),
        actor: format!("api:{}", client.name),
        client: Some(client.name.clone()),
        ..tessera_core::engine::RequestCtx::new(tessera_core::engine::Door::Api)
    }
}

/// The password grant (user clients): the user's first factor through the client's
/// application; more factors answer with an MFA_PENDING token.
pub(super) async fn password_grant(
    state: &HttpState,
    client: &ApiClient,
    params: &HashMap<String, String>,
    ip: std::net::IpAddr,
) -> Result<Response, OAuthError> {
    if client.kind != ApiClientKind::User {
        return Err(OAuthError::UnauthorizedClient(
            "only user clients use the password grant".into(),
        ));
    }
    if !client.has_scope("validate") {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not sign users in (scope validate)".into(),
        ));
    }
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return Err(OAuthError::InvalidRequest(
            "username and password are required".into(),
        ));
    };
    if code_first_method(&state.engine.snapshot(), client).is_some() {
        return Err(OAuthError::InvalidRequest(
            "the client's application starts with a code sent to the user: use /oauth/otp/generate"
                .into(),
        ));
    }
    if username.is_empty() || !login_name_ok(username) || password.len() > 1024 {
        return Err(OAuthError::InvalidRequest(
            "username empty, too long or with control characters, or password too long".into(),
        ));
    }
    let req = tessera_core::engine::AuthRequest {
        user: Some(username.clone()),
        pass: zeroize::Zeroizing::new(password.clone()),
        fallback_channel: params.get("fallbackChannel").cloned(),
        ..Default::default()
    };
    match state
        .engine
        .authenticate(&req, &request_ctx(client, ip))
        .await
    {
        Ok(outcome) => user_token(state, client, &outcome, Issue::PRIMARY).await,
        Err(tessera_core::engine::EngineError::Channel(c)) => {
            Err(OAuthError::InvalidRequest(format!("{c} ({})", c.code())))
        }
        Err(e) => Err(OAuthError::engine(&e, "password grant failed")),
    }
}
