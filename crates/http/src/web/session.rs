//! SSO sessions seen from the browser: the live session behind the cookie, what it signed in
//! to, signing out (with the relying parties told), and the user's list of sessions.

use super::*;
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use tessera_core::model::ApiClientKind;
use tessera_core::sso::SessionLimits;

/// The live SSO session behind a cookie (idle and absolute limits checked; the user still
/// active is checked when a code is traded).
pub(crate) async fn live_session(state: &HttpState, key: &str) -> Option<Session> {
    live_session_until(state, key).await.map(|(s, _)| s)
}

/// The same, with when the session ends.
pub(super) async fn live_session_until(state: &HttpState, key: &str) -> Option<(Session, i64)> {
    let limits = SessionLimits::of(&state.engine.snapshot().settings);
    state.engine.sso().session(key, limits).await.ok()?
}

/// The application's own SSO limits (shorter than the settings', which `live_session`
/// checks) allow the session: signed in recently enough, used recently enough.
pub(crate) fn serves_app(
    snap: &tessera_core::engine::Snapshot,
    app: &tessera_core::ids::AppName,
    session: &Session,
    now: i64,
) -> bool {
    let Some(def) = snap.application(app) else {
        return false;
    };
    let minutes = |m: Option<u32>| m.map(|m| i64::from(m) * 60);
    minutes(def.sso_session_minutes).is_none_or(|l| now - session.auth_time < l)
        && minutes(def.sso_idle_minutes).is_none_or(|i| now - session.last_seen < i)
}

/// Records in an SSO session that it signed in to a SAML service provider (the last sign-in
/// there replaces an earlier one), for single logout.
pub(crate) async fn remember_saml(
    state: &HttpState,
    key: &str,
    joined: tessera_core::model::SamlParticipant,
) {
    if let Err(e) = state.engine.sso().remember_saml(key, joined).await {
        tracing::warn!(error = %e, "SSO session's SAML sign-in not recorded");
    }
}

/// Records in an SSO session that it signed in to an OIDC client (for back-channel logout).
pub(super) async fn remember_oidc(state: &HttpState, key: &str, client_id: &str) {
    if let Err(e) = state.engine.sso().remember_oidc(key, client_id).await {
        tracing::warn!(error = %e, "SSO session's OIDC sign-in not recorded");
    }
}

/// Ends the SSO session behind a cookie key; returns it. `how` says who ended it, for the
/// audit record.
pub(crate) async fn end_session(state: &HttpState, key: &str, how: &str) -> Option<Session> {
    state.engine.sso().end(key, how).await.ok()?
}

/// An audit record of single sign-on: a sign-in given to a relying party, a session ended.
pub(crate) async fn audit_sso(
    state: &HttpState,
    action: &str,
    actor: &str,
    user: &str,
    realm: &str,
    application: Option<&str>,
    reason: &str,
) {
    state
        .engine
        .sso()
        .audit(action, actor, (user, realm), application, reason)
        .await;
}

/// Marks an SSO session used now (its idle limit starts again); its end stays.
pub(crate) async fn touch_session(state: &HttpState, key: &str) {
    if let Err(e) = state.engine.sso().touch(key).await {
        tracing::warn!(error = %e, "SSO session not marked used");
    }
}

/// The token a sign-out form carries: only a page of this browser's session knows it.
pub(super) fn logout_token(session_key: &str) -> String {
    hash(&format!("logout\u{1f}{session_key}"))
}

/// `GET /logout`: asks before ending the SSO session (a link on another site must not sign the
/// user out).
/// Where a relying party asks its users to be sent after signing out (RP-Initiated Logout):
/// the registered address with the state, or why not.
pub(super) fn after_logout(
    state: &HttpState,
    q: &HashMap<String, String>,
) -> Result<Option<String>, ()> {
    let Some(uri) = q.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    // The client: named, or the audience of the ID token hint (read only to find the client:
    // the address must be registered for it either way).
    let hinted = q.get("id_token_hint").and_then(|t| {
        let part = t.split('.').nth(1)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(part.as_bytes())
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        claims["aud"].as_str().map(str::to_string)
    });
    let snap = state.engine.snapshot();
    let client = q
        .get("client_id")
        .cloned()
        .or(hinted)
        .and_then(|id| snap.api_client_by_id(&id).cloned())
        .filter(|c| c.kind == ApiClientKind::Oidc)
        .ok_or(())?;
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return Err(());
    }
    let st = q.get("state").filter(|s| s.len() <= 512);
    Ok(Some(match st {
        Some(s) => back_to(uri, &[("state", s.as_str())]),
        None => uri.clone(),
    }))
}

pub(super) async fn logout_page(
    state: St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let lang = lang_of(&headers, None);
    let Ok(q) = query(raw.as_deref()) else {
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    // A return address the client did not register (or no such client): the user is still
    // signed out, and stays on Tessera's signed-out page instead of being sent anywhere.
    let then = match after_logout(&state, &q) {
        Ok(then) => then,
        Err(()) => {
            tracing::info!(
                client_id = %q.get("client_id").map(|c| c.chars().take(64).collect::<String>()).unwrap_or_default(),
                "logout: post_logout_redirect_uri is not registered for the client; the user stays at Tessera's signed-out page"
            );
            None
        }
    };
    if cookie(&state, &headers, SSO_COOKIE).is_none()
        && let Some(then) = then
    {
        return redirect(&then);
    }
    let mut hidden = Vec::new();
    for k in [
        "client_id",
        "id_token_hint",
        "post_logout_redirect_uri",
        "state",
    ] {
        if then.is_some()
            && let Some(v) = q.get(k)
        {
            hidden.push((k, v.clone()));
        }
    }
    ask_logout_with(&state, &headers, hidden).await
}

/// The page that asks whether to sign out (the form's token only this browser's page has).
pub(crate) async fn ask_logout(state: &HttpState, headers: &HeaderMap) -> Response {
    ask_logout_with(state, headers, Vec::new()).await
}

pub(super) async fn ask_logout_with(
    state: &HttpState,
    headers: &HeaderMap,
    hidden: Vec<(&'static str, String)>,
) -> Response {
    let lang = lang_of(headers, None);
    let Some(key) = cookie(state, headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let token = logout_token(&key);
    render(
        Page {
            hidden,
            lang: &lang,
            app_title: "Tessera",
            brand: None,
            step: "logout",
            csrf: &token,
            error: None,
            username: "",
            ask_password: None,
            pin_first: true,
            prompt: "",
            answer_type: "text",
            done: false,
            fatal: false,
        },
        StatusCode::OK,
    )
}

/// `POST /logout`: ends the browser's SSO session.
pub(super) async fn logout(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers, None);
    let form = query(std::str::from_utf8(&body).ok()).unwrap_or_default();
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let want = logout_token(&key);
    if !same_token(form.get("csrf"), &want) {
        return fatal(&lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    // Where the relying party asked its user to go afterwards (checked again here).
    let then = after_logout(&state, &form).ok().flatten();
    let ended = end_session(&state, &key, "signed out at /logout").await;
    if let Some(s) = &ended {
        crate::backchannel::notify(&state, std::slice::from_ref(s));
    }
    // The SAML service providers the session signed in to are told, through this browser.
    let mut res = match (ended, &then) {
        (Some(s), _) if !s.saml.is_empty() => {
            crate::saml::logout_everywhere(&state, &lang, s.saml, then.clone()).await
        }
        (_, Some(then)) => redirect(then),
        _ => fatal(&lang, PageError::SignedOut, StatusCode::OK),
    };
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, SSO_COOKIE, "", 0));
    res
}

/// `GET /login/sessions`: the signed-in user's SSO sessions (address, browser, applications,
/// times), each with a button that ends it, and one that ends them all.
pub(super) async fn sessions_page(state: St, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers, None);
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let Some(mine) = live_session(&state, &key).await else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let sessions = match state.admin.sessions_of(&mine.user, &mine.realm).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sessions not listed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let this = hash(&key);
    let rows: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "current": s.id == this, "ip": s.session.client_ip,
                "browser": s.session.user_agent, "apps": s.session.apps.join(", "),
                "since": s.session.created_at, "last_seen": s.session.last_seen,
            })
        })
        .collect();
    plain_page(
        "sessions.html",
        minijinja::context! {
            lang => lang, t => texts(&lang), user => mine.user, sessions => rows,
            csrf => logout_token(&key),
        },
    )
}

/// `POST /login/sessions`: ends one of the user's sessions (`end` = its id) or all (`end=all`).
pub(super) async fn end_sessions(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers, None);
    let form = query(std::str::from_utf8(&body).ok()).unwrap_or_default();
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let Some(mine) = live_session(&state, &key).await else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let want = logout_token(&key);
    if !same_token(form.get("csrf"), &want) {
        return fatal(&lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    let id = match form.get("end").map(String::as_str) {
        Some("all") => None,
        Some(id) => Some(id),
        None => return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST),
    };
    let actor = tessera_core::admin::Actor {
        name: format!("user:{}", mine.user),
        door: "web".into(),
        client_ip: None,
    };
    match state
        .admin
        .end_sso_sessions(&actor, &mine.user, Some(&mine.realm), id)
        .await
    {
        // Their OpenID Connect clients are told by the server's back-channel worker (queued
        // by `end_sso_sessions`: told once, not here as well).
        Ok(_) => redirect("/login/sessions"),
        Err(tessera_core::admin::AdminError::NotFound(_)) => {
            fatal(&lang, PageError::Expired, StatusCode::NOT_FOUND)
        }
        Err(e) => {
            tracing::error!(error = %e, "sessions not ended");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
