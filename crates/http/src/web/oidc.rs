//! The OpenID Connect provider: authorization requests, codes and their trade at the token
//! endpoint, refresh of ID tokens, userinfo and discovery.

use super::*;
use crate::oauth::{
    OAuthError, active_claims, invalid_token, issuer, keep_refresh_token, no_store, token_signer,
    unavailable,
};
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use tessera_core::model::{ApiClient, ApiClientKind};
use tessera_core::sso::{AuthCode, SpentCode, pkce_matches};

/// `/oidc/authorize`: checks the relying party's request, then signs the user in (on the login
/// page, or at once with an SSO session that passed the client's application).
pub(super) async fn authorize(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    authorize_with(state, headers, raw.as_deref()).await
}

/// `POST /oidc/authorize`: the same request, its parameters form-encoded in the body (OpenID
/// Connect Core §3.1.2.1 requires both methods).
pub(super) async fn authorize_post(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        tracing::info!(
            reason = "the body is not UTF-8",
            "authorization request refused"
        );
        return fatal("en", PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    authorize_with(state, headers, Some(text)).await
}

/// Checks a relying party's authorization request; every refusal is logged with its reason
/// (the relying party's administrator reads it there: the browser only sees a short page or
/// an error sent back).
pub(super) async fn authorize_with(state: St, headers: HeaderMap, raw: Option<&str>) -> Response {
    let Ok(q) = query(raw) else {
        tracing::info!(
            reason = "a parameter repeats",
            "authorization request refused"
        );
        return fatal("en", PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    let lang = lang_of(&headers, q.get("ui_locales").map(String::as_str));
    let snap = state.engine.snapshot();
    let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
    let refused = |reason: &str| {
        tracing::info!(client_id = %client_id.chars().take(64).collect::<String>(), reason, "authorization request refused");
    };
    // Until the client and its redirect URI are known, errors are shown, not sent back.
    let client = q
        .get("client_id")
        .and_then(|id| snap.api_client_by_id(id))
        .filter(|c| c.kind == ApiClientKind::Oidc)
        .cloned();
    let Some(client) = client else {
        refused("no OpenID Connect client has this client_id");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    let Some(redirect_uri) = q.get("redirect_uri") else {
        refused("no redirect_uri");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        refused("the redirect_uri is not one registered for the client (exact match)");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    }
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let st = q.get("state").filter(|s| s.len() <= 512).cloned();
    if q.get("state").is_some_and(|s| s.len() > 512) {
        refused("state longer than 512 characters");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    }
    let fail = |error: &str, description: &str| {
        refused(&format!("{error}: {description}"));
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &st {
            params.push(("state", s.as_str()));
        }
        params.push(("iss", iss.as_str()));
        redirect(&back_to(redirect_uri, &params))
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail("unsupported_response_type", "only the code flow is offered");
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if !scopes.contains(&"openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    if let Some(other) = scopes.iter().find(|s| !OIDC_SCOPES.contains(s)) {
        return fail(
            "invalid_scope",
            &format!(
                "scope '{other}' is not offered (openid, profile, email, phone, offline_access)"
            ),
        );
    }
    let scope = scopes.join(" ");
    let challenge = q.get("code_challenge").filter(|c| {
        c.len() == 43
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // PKCE: S256 only; required unless the client's `require_pkce` is off.
    let challenge = match (
        q.get("code_challenge"),
        challenge,
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _, None) if !client.require_pkce && !client.public => String::new(),
        (None, _, None) => {
            return fail(
                "invalid_request",
                "PKCE with S256 is required (code_challenge and code_challenge_method=S256)",
            );
        }
        (None, _, Some(_)) => return fail("invalid_request", "code_challenge is missing"),
        (Some(_), Some(c), Some("S256")) => c.clone(),
        (Some(_), None, _) => {
            return fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters (S256)",
            );
        }
        _ => return fail("invalid_request", "code_challenge_method must be S256"),
    };
    let challenge = &challenge;
    if q.get("nonce").is_some_and(|n| n.len() > 256) {
        return fail("invalid_request", "nonce longer than 256 characters");
    }
    let nonce = q.get("nonce").cloned();
    let max_age = match q.get("max_age").map(|m| m.parse::<i64>()) {
        None => None,
        Some(Ok(m)) if m >= 0 => Some(m),
        Some(_) => return fail("invalid_request", "max_age must be a number of seconds"),
    };
    let Some(app) = client.application.clone() else {
        return fail("server_error", "the client has no application");
    };
    let now = state.engine.clock().now();
    let prompts: Vec<&str> = q
        .get("prompt")
        .map(|p| p.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none goes with no other value");
    }
    // An SSO session that passed this application's factors (recently enough, when max_age
    // asks) signs the user in at once.
    if !prompts.contains(&"login")
        && let Some(key) = cookie(&state, &headers, SSO_COOKIE)
        && let Some(session) = live_session(&state, &key).await
        && session.apps.contains(&app.0)
        && max_age.is_none_or(|m| now - session.auth_time < m)
        && serves_app(&snap, &app, &session, now)
    {
        touch_session(&state, &key).await;
        let code = AuthCode {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.clone(),
            nonce,
            user: session.user.clone(),
            realm: session.realm.clone(),
            scope,
            auth_time: session.auth_time,
            sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
        };
        let res = match issue_code(&state, &code, st.as_deref(), &iss).await {
            Ok(res) => res,
            Err(res) => return res,
        };
        remember_oidc(&state, &key, &client.client_id).await;
        return res;
    }
    if prompts.contains(&"none") {
        return fail("login_required", "no session for this application");
    }
    let key = state.engine.sso().new_key();
    let flow = Flow {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: st.clone(),
        nonce,
        code_challenge: challenge.clone(),
        scope,
        app: app.0.clone(),
        lang,
        csrf: state.engine.sso().new_key(),
        tx: None,
        user: None,
        prompt: None,
        dummy: false,
        max_age,
        saml: None,
        account: false,
    };
    begin(&state, &key, &flow).await
}

/// Keeps a single-use code for the relying party and sends the browser back with it.
pub(super) async fn issue_code(
    state: &HttpState,
    code: &AuthCode,
    st: Option<&str>,
    iss: &str,
) -> Result<Response, Response> {
    let value = state
        .engine
        .sso()
        .issue_code(code, CODE_SECONDS)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "authorization code not kept");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })?;
    let mut params = vec![("code", value.as_str())];
    if let Some(s) = st {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    Ok(redirect(&back_to(&code.redirect_uri, &params)))
}

/// An authorization code presented again after it bought tokens: by its own client with its
/// PKCE verifier, what it bought is revoked and the event audited (see
/// [`tessera_core::sso::Sso::code_presented_again`]); by anyone else nothing happens.
pub(super) async fn spent_code_again(
    state: &HttpState,
    client: &ApiClient,
    code: &str,
    verifier: &str,
) {
    let reused = match state
        .engine
        .sso()
        .code_presented_again(code, &client.client_id, verifier)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "reused code not checked");
            return;
        }
    };
    tracing::warn!(client = %client.name, user = %reused.spent.user,
        "authorization code used twice: the access token it bought is revoked");
    crate::oauth::audit_reuse(
        state,
        client,
        "oidc_code_reused",
        (reused.spent.user, reused.spent.realm),
        if reused.revoked { "ok" } else { "error" },
        "authorization code presented again: its access token is revoked".into(),
    )
    .await;
}

/// The authorization_code grant at `/oauth/token` (OIDC clients): the code, once, for the
/// client it was issued to, with the same redirect URI and the PKCE verifier.
pub(crate) async fn code_grant(
    state: &HttpState,
    client: &ApiClient,
    params: &HashMap<String, String>,
) -> Response {
    let bad = |why: &str| OAuthError::InvalidGrant(String::from(why)).into_response();
    if client.kind != ApiClientKind::Oidc {
        return OAuthError::UnauthorizedClient(
            "only OIDC clients use the authorization code grant".into(),
        )
        .into_response();
    }
    let (Some(code), Some(redirect_uri)) = (params.get("code"), params.get("redirect_uri")) else {
        return OAuthError::InvalidRequest(
            "code and redirect_uri are required (and code_verifier when PKCE was used)".into(),
        )
        .into_response();
    };
    let verifier = params
        .get("code_verifier")
        .map(String::as_str)
        .unwrap_or("");
    // An RS256 client needs the RSA key: without it the code is not used up for nothing.
    let rsa = match client.id_token_alg.as_deref() {
        Some("RS256") => match crate::rsa_key::signer(state).await {
            Ok(Some(rsa)) => Some(rsa),
            Ok(None) => {
                tracing::error!(client = %client.name, "no RS256 key: import one with tessera oidc import-key");
                return OAuthError::Server("no signing key for this client's ID tokens".into())
                    .into_response();
            }
            Err(e) => {
                tracing::error!(error = %e, "RS256 key unavailable");
                return unavailable();
            }
        },
        _ => None,
    };
    let now = state.engine.clock().now();
    let c = match state.engine.sso().redeem_code(code).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            spent_code_again(state, client, code, verifier).await;
            return bad("unknown, expired or used code");
        }
        Err(e) => {
            tracing::error!(error = %e, "code not read");
            return unavailable();
        }
    };
    if c.client_id != client.client_id || c.redirect_uri != *redirect_uri {
        return bad("the code was issued to another client or redirect URI");
    }
    // A code asked for with PKCE needs its verifier; one asked for without (a client whose
    // require_pkce is off) takes none.
    match (c.code_challenge.is_empty(), verifier.is_empty()) {
        // A public client has nothing else to prove the code is its own.
        (true, _) if client.public => {
            return bad("a public client's code needs PKCE");
        }
        (true, true) => {}
        (true, false) => {
            return bad("code_verifier given, but the code was asked for without PKCE");
        }
        (false, _) if !pkce_matches(verifier, &c.code_challenge) => {
            return bad("code_verifier does not match the code_challenge (PKCE S256)");
        }
        (false, _) => {}
    }
    let lifetime = i64::from(client.token_lifetime_seconds);
    let rng = state.engine.rng();
    let jti = tessera_core::rng::random_hex(rng, 16);
    // What the code buys, kept before anything is awaited (a copy of the code presented
    // meanwhile must find it) and while the access token lives: the code presented again
    // revokes it (RFC 6749 §4.1.2). Kept though the trade may still fail: its token then
    // never exists.
    let spent = SpentCode {
        client_id: c.client_id.clone(),
        code_challenge: c.code_challenge.clone(),
        jti: jti.clone(),
        user: c.user.clone(),
        realm: c.realm.clone(),
        expires_at: now + lifetime,
    };
    if let Err(e) = state.engine.sso().keep_spent_code(code, &spent).await {
        tracing::warn!(error = %e, "spent code not remembered");
    }
    // The user must still be able to sign in.
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(c.realm.clone());
    let user = match state.engine.find_user(&snap, &realm, &c.user).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => return bad("the user can no longer sign in"),
        Err(e) => {
            tracing::warn!(error = %e, "code: user not looked up");
            return unavailable();
        }
    };
    let signer = match token_signer(state).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let iss = match issuer(state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let access = json!({
        "iss": iss, "sub": c.user, "realm": c.realm, "aud": "tessera",
        "client_id": client.client_id, "scope": c.scope, "role": "USER",
        "iat": now, "exp": now + lifetime, "jti": jti,
    });
    let mut id = json!({
        "iss": iss, "sub": subject(&user), "aud": client.client_id, "azp": client.client_id,
        "iat": now, "exp": now + lifetime.min(3600), "auth_time": c.auth_time,
        "jti": tessera_core::rng::random_hex(rng, 16),
    });
    if let (Some(n), Some(obj)) = (&c.nonce, id.as_object_mut()) {
        obj.insert("nonce".into(), Value::String(n.clone()));
    }
    if let (Some(sid), Some(obj)) = (&c.sid, id.as_object_mut()) {
        obj.insert("sid".into(), Value::String(sid.clone()));
    }
    let id_token = match &rsa {
        Some(rsa) => rsa.sign_typed(&id, "JWT"),
        None => signer.sign_typed(&id, "JWT"),
    };
    if let Err(e) = &id_token {
        tracing::error!(error = %e, client = %client.name, "ID token not signed");
    }
    let (Ok(access), Ok(id_token)) = (signer.sign_typed(&access, "at+jwt"), id_token) else {
        return OAuthError::Server("signing failed".into()).into_response();
    };
    audit_sso(
        state,
        "oidc_sign_in",
        &format!("oidc:{}", client.name),
        &c.user,
        &c.realm,
        client.application.as_ref().map(|a| a.0.as_str()),
        &format!(
            "ID token issued to the OpenID Connect client {} (scope {})",
            client.name, c.scope
        ),
    )
    .await;
    let mut body = json!({
        "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
        "scope": c.scope, "id_token": id_token,
    });
    // Offline access: a refresh token, single use, renewed at each refresh, ending
    // `oidc_refresh_days` after the sign-in.
    if c.scope.split(' ').any(|s| s == "offline_access") {
        let days = i64::from(state.engine.snapshot().settings.oidc_refresh_days);
        match keep_refresh_token(
            state,
            client,
            &c.user,
            &c.realm,
            &c.scope,
            now + days * 86_400,
        )
        .await
        {
            Ok(refresh) => {
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("refresh_token".into(), Value::String(refresh));
                }
            }
            Err(e) => return e.into_response(),
        }
    }
    let mut res = axum::Json(body).into_response();
    no_store(&mut res);
    res
}

/// The refresh_token grant of an OIDC client (`offline_access`): a new access token for a
/// user who can still sign in, for the same or fewer scopes, and a new refresh token with the
/// same scope and end; the one presented is spent (`kept`, already taken by the caller).
pub(crate) async fn oidc_refresh(
    state: &HttpState,
    client: &ApiClient,
    kept: tessera_core::store::RefreshToken,
    asked_scope: Option<&String>,
) -> Response {
    let bad = |why: &str| OAuthError::InvalidGrant(String::from(why)).into_response();
    let now = state.engine.clock().now();
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(kept.realm.clone());
    match state.engine.find_user(&snap, &realm, &kept.username).await {
        Ok(Some(u)) if u.is_active(now) => {}
        Ok(_) => return bad("the user can no longer sign in"),
        Err(e) => {
            tracing::warn!(error = %e, "refresh: user not looked up");
            return unavailable();
        }
    }
    let scope = asked_scope.unwrap_or(&kept.scope);
    let signer = match token_signer(state).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let iss = match issuer(state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let lifetime = i64::from(client.token_lifetime_seconds);
    let jti = tessera_core::rng::random_hex(state.engine.rng(), 16);
    let access = json!({
        "iss": iss, "sub": kept.username, "realm": kept.realm, "aud": "tessera",
        "client_id": client.client_id, "scope": scope, "role": "USER",
        "iat": now, "exp": now + lifetime, "jti": jti,
    });
    let Ok(access) = signer.sign_typed(&access, "at+jwt") else {
        return OAuthError::Server("signing failed".into()).into_response();
    };
    let refresh = match keep_refresh_token(
        state,
        client,
        &kept.username,
        &kept.realm,
        &kept.scope,
        kept.expires_at,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut res = axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
        "scope": scope, "refresh_token": refresh,
    }))
    .into_response();
    no_store(&mut res);
    res
}

/// `/oidc/userinfo`: the signed-in user's claims, by the scopes of the access token.
/// `/oidc/userinfo`: the access token as a bearer header, or (POST) as the form parameter
/// `access_token` (RFC 6750 §2.2) — one of the two.
pub(super) async fn userinfo(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let form_token = std::str::from_utf8(&body)
        .ok()
        .filter(|b| !b.is_empty())
        .and_then(|b| query(Some(b)).ok())
        .and_then(|f| f.get("access_token").cloned());
    let token = match (crate::oauth::bearer(&headers), form_token.as_deref()) {
        (Some(_), Some(_)) => {
            return OAuthError::InvalidRequest(
                "the access token goes in the header or the body, not both".into(),
            )
            .into_response();
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return invalid_token("an access token is required").into_response(),
    };
    let Some(claims) = active_claims(&state, token).await else {
        return invalid_token("the token is not valid (expired, revoked or not ours)")
            .into_response();
    };
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap_or("").split(' ').collect();
    let (true, true, Some(user), Some(realm)) = (
        claims["aud"] == "tessera" && claims["role"] == "USER",
        scopes.contains(&"openid"),
        claims["sub"].as_str(),
        claims["realm"].as_str(),
    ) else {
        return invalid_token("not an OpenID Connect access token").into_response();
    };
    let snap = state.engine.snapshot();
    let now = state.engine.clock().now();
    let realm_name = tessera_core::ids::RealmName(realm.to_string());
    let user = match state.engine.find_user(&snap, &realm_name, user).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => return invalid_token("the user can no longer sign in").into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), Value::String(subject(&user)));
    if scopes.contains(&"profile") {
        out.insert("preferred_username".into(), json!(user.username));
        let name = [user.given_name.as_deref(), user.surname.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            out.insert("name".into(), json!(name));
        }
        if let Some(g) = &user.given_name {
            out.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &user.surname {
            out.insert("family_name".into(), json!(f));
        }
        out.insert("groups".into(), json!(user.groups));
    }
    if scopes.contains(&"email")
        && let Some(m) = &user.email
    {
        out.insert("email".into(), json!(m));
    }
    if scopes.contains(&"phone")
        && let Some(p) = &user.phone
    {
        out.insert("phone_number".into(), json!(p));
    }
    let mut res = axum::Json(Value::Object(out)).into_response();
    no_store(&mut res);
    res
}

pub(super) async fn discovery(state: St) -> Response {
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let mut algs = vec!["ES256"];
    if matches!(crate::rsa_key::signer(&state).await, Ok(Some(_))) {
        algs.push("RS256");
    }
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oidc/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
        "jwks_uri": format!("{iss}/oauth/jwks"),
        "end_session_endpoint": format!("{iss}/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "claims_supported": ["sub", "preferred_username", "name", "given_name", "family_name",
            "email", "phone_number", "groups", "auth_time", "nonce", "sid"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["en", "tr"],
    }))
    .into_response()
}
