//! Logins that wait for another factor: pending tokens, answers, MFA passwords, and codes
//! sent first or again.

use super::*;
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tessera_core::ids::login_name_ok;
use tessera_core::model::{ApiClient, ApiClientKind, Method};
use tessera_core::sso::TokenRole;

pub(crate) fn invalid_token(why: &str) -> OAuthError {
    OAuthError::InvalidToken(why.into())
}

/// A login waiting for an answer, from its pending token (the bearer).
pub(super) struct Pending {
    pub(super) claims: Value,
    pub(super) client: ApiClient,
    pub(super) tx: tessera_core::ids::TransactionId,
    pub(super) user: String,
}

/// The pending login whose token (of `role`) is the request's bearer; `Err` is the answer.
pub(super) async fn pending_login(
    state: &HttpState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    role: &str,
) -> Result<Pending, OAuthError> {
    let Some(token) = bearer(headers) else {
        return Err(invalid_token(&format!(
            "an {role} token is required as bearer"
        )));
    };
    let Some(claims) = active_claims(state, token).await else {
        return Err(invalid_token(
            "the token is not valid (expired, revoked or not ours)",
        ));
    };
    let (true, Some(tx), Some(user), Some(client_id)) = (
        claims["role"] == role,
        claims["mfa_tx"].as_str(),
        claims["sub"].as_str(),
        claims["client_id"].as_str(),
    ) else {
        return Err(invalid_token(&format!("not an {role} token")));
    };
    let snap = state.engine.snapshot();
    let Some(client) = snap.api_client_by_id(client_id).cloned() else {
        return Err(invalid_token("the client of this token no longer exists"));
    };
    if !client.allows_ip(ip) {
        return Err(invalid_token("this client may not call from this address"));
    }
    // The first factor's code is signing in (scope validate); later factors are MFA steps.
    let scope = match role {
        "OTP_PENDING" => "validate",
        _ => "mfa",
    };
    if !client.has_scope(scope) {
        return Err(insufficient_scope(scope));
    }
    let Some(tx) = tessera_core::ids::TransactionId::parse(tx) else {
        return Err(invalid_token(&format!("not an {role} token")));
    };
    if let Some(e) = rate_limited(state, &client, ip).await {
        return Err(e);
    }
    Ok(Pending {
        user: user.to_string(),
        claims,
        client,
        tx,
    })
}

/// `/oauth/mfa` (also `/oauth/mfa/otp/validate`): the next factor of a login whose
/// MFA_PENDING token is the bearer; `otp` is the answer.
pub(super) async fn mfa(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    answer_pending(&state, peer, &headers, &body, "MFA_PENDING").await
}

/// `/oauth/otp/validate`: the code of a session started by `/oauth/otp/generate`, whose
/// OTP_PENDING token is the bearer.
pub(super) async fn otp_validate(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    answer_pending(&state, peer, &headers, &body, "OTP_PENDING").await
}

/// Answers the pending factor of a login: a USER token when every factor is done, an
/// MFA_PENDING token when another follows (the pending token is spent either way), or
/// `invalid_grant`.
pub(super) async fn answer_pending(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
    role: &'static str,
) -> Result<Response, OAuthError> {
    let params = form_once(body)?;
    let ip = state.client_ip(peer, headers, None);
    let p = pending_login(state, headers, ip, role).await?;
    // `password` for an MFA password (either name is taken for either answer).
    let answer = params.get("otp").or_else(|| params.get("password"));
    let Some(otp) = answer.filter(|o| !o.is_empty() && o.len() <= 1024) else {
        return Err(OAuthError::InvalidRequest(
            "otp (the code, or the MFA password) is required".into(),
        ));
    };
    let req = tessera_core::engine::AuthRequest {
        user: Some(p.user.clone()),
        realm: p.claims["realm"].as_str().map(str::to_string),
        pass: zeroize::Zeroizing::new(otp.clone()),
        transaction_id: Some(p.tx.clone()),
        ..Default::default()
    };
    let outcome = match state
        .engine
        .authenticate(&req, &request_ctx(&p.client, ip))
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return Err(OAuthError::engine(&e, "MFA step failed"));
        }
    };
    finish_pending(state, &p, &outcome, role == "MFA_PENDING").await
}

/// The answer to a pending login that moved on: its next token (the pending token is spent),
/// or `invalid_grant`.
pub(super) async fn finish_pending(
    state: &HttpState,
    p: &Pending,
    outcome: &tessera_core::engine::Outcome,
    mfa_done: bool,
) -> Result<Response, OAuthError> {
    if let tessera_core::engine::Outcome::Reject(_) = outcome {
        // One answer for a wrong code and a session that is over: the audit record tells them
        // apart.
        return Err(OAuthError::InvalidGrant(
            "wrong code, or the session is over (expired, finished or too many wrong answers)"
                .into(),
        ));
    }
    // The pending token has served: the login moved on.
    if let (Some(jti), Some(exp)) = (p.claims["jti"].as_str(), p.claims["exp"].as_i64())
        && let Err(e) = state.engine.sso().revoke_access(jti, exp).await
    {
        tracing::error!(error = %e, "pending token not revoked");
        return Err(OAuthError::unavailable());
    }
    let issue = Issue {
        pending_role: TokenRole::MfaPending,
        mfa_done,
        key_expires_at: None,
        scope: None,
        typed_user: None,
    };
    user_token(state, &p.client, outcome, issue).await
}

/// `/oauth/mfa/password/setup` and `/oauth/mfa/password/reset`: the user sets a new MFA
/// password (with the code sent by `/oauth/mfa/otp/generate`, unless the settings skip it),
/// which answers the pending MFA password factor.
pub(super) async fn mfa_password_setup(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    mfa_password_change(&state, peer, &headers, &body, false).await
}

pub(super) async fn mfa_password_reset(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    mfa_password_change(&state, peer, &headers, &body, true).await
}

pub(super) async fn mfa_password_change(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
    reset: bool,
) -> Result<Response, OAuthError> {
    let params = form_once(body)?;
    let ip = state.client_ip(peer, headers, None);
    let p = pending_login(state, headers, ip, "MFA_PENDING").await?;
    let Some(password) = params.get("password") else {
        return Err(OAuthError::InvalidRequest(
            "password (the new MFA password) is required".into(),
        ));
    };
    let settings = &state.engine.snapshot().settings;
    let rule = settings.mfa_password_regex.clone();
    if !settings.mfa_password_fits(password) {
        return Err(OAuthError::InvalidRequest(format!(
            "the MFA password must match {rule}"
        )));
    }
    let outcome = match state
        .engine
        .set_mfa_password(
            &p.tx,
            password,
            params.get("otp").map(String::as_str),
            reset,
            &request_ctx(&p.client, ip),
        )
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return Err(OAuthError::engine(&e, "MFA password not set"));
        }
    };
    use tessera_core::engine::{Outcome, RejectReason};
    match &outcome {
        Outcome::Reject(r) if r.reason == RejectReason::MfaPasswordState => {
            Err(OAuthError::InvalidRequest(String::from(if reset {
                "the user has no MFA password to reset: set one up"
            } else {
                "the user has an MFA password already: reset it"
            })))
        }
        Outcome::Reject(r) if r.reason == RejectReason::WrongFactor => Err(
            OAuthError::InvalidRequest("the pending factor is not an MFA password".into()),
        ),
        _ => finish_pending(state, &p, &outcome, true).await,
    }
}

/// `/oauth/otp/generate` (user clients): starts a login whose first factor is a code sent to
/// the user (seed 003's primary OTP), answered at `/oauth/otp/validate` with the OTP_PENDING
/// token returned.
pub(super) async fn otp_generate(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (params, ip, client) = client_call(&state, peer, &headers, &body).await?;
    if let Some(e) = rate_limited(&state, &client, ip).await {
        return Err(e);
    }
    if let Some(e) = lacks_required_header(&state, &headers) {
        return Err(e);
    }
    if client.kind != ApiClientKind::User {
        return Err(OAuthError::UnauthorizedClient(
            "only user clients sign users in".into(),
        ));
    }
    if !client.has_scope("validate") {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not sign users in (scope validate)".into(),
        ));
    }
    let Some(username) = params
        .get("username")
        .filter(|u| !u.is_empty() && login_name_ok(u))
    else {
        return Err(OAuthError::InvalidRequest(
            "username is required (at most 256 bytes, no control characters)".into(),
        ));
    };
    // Only an application whose first factor is a code sent now starts this way (the engine
    // checks it again for the application a route picks).
    let snap = state.engine.snapshot();
    let Some(method) = code_first_method(&snap, &client) else {
        return Err(OAuthError::InvalidRequest("the client's application does not start with a code sent by SMS or mail; use the password grant".into()));
    };
    // Whether the channel asked for is set up depends on the configuration only: say so. What
    // depends on the user (no phone, no mail) gets the answer everyone gets.
    let fallback = params.get("fallbackChannel").cloned();
    let Some(channel) =
        tessera_core::engine::expected_channel(&snap.settings, method, fallback.as_deref(), false)
    else {
        let c = tessera_core::engine::ChannelError::NotConfigured;
        return Err(OAuthError::InvalidRequest(format!("{c} ({})", c.code())));
    };
    let req = tessera_core::engine::AuthRequest {
        user: Some(username.clone()),
        fallback_channel: fallback,
        code_first: true,
        ..Default::default()
    };
    let outcome = match state
        .engine
        .authenticate(&req, &request_ctx(&client, ip))
        .await
    {
        Ok(o) => Some(o),
        Err(tessera_core::engine::EngineError::Channel(
            tessera_core::engine::ChannelError::NotConfigured,
        )) => {
            let c = tessera_core::engine::ChannelError::NotConfigured;
            return Err(OAuthError::InvalidRequest(format!("{c} ({})", c.code())));
        }
        Err(tessera_core::engine::EngineError::Channel(_)) => None,
        Err(e) => {
            return Err(OAuthError::engine(&e, "OTP generate failed"));
        }
    };
    // The pending token names the user as the request did, known or not.
    let (login, realm) = snap.split_login(username, None);
    let realm = realm.unwrap_or_else(|| snap.settings.default_realm.clone());
    let issue = Issue {
        pending_role: TokenRole::OtpPending,
        mfa_done: false,
        key_expires_at: None,
        scope: None,
        typed_user: Some((&login, &realm)),
    };
    if let Some(outcome @ tessera_core::engine::Outcome::Challenge(_)) = &outcome {
        return user_token(&state, &client, outcome, issue).await;
    }
    // An unknown user (or one who cannot get a code) gets the same answer as anyone else: a
    // session that no code will finish, with the prompt a code would have; the audit record
    // has the reason.
    let id =
        tessera_core::rng::random_digits(state.engine.rng(), tessera_core::ids::TransactionId::LEN);
    let Some(id) = tessera_core::ids::TransactionId::parse(&id) else {
        return Err(OAuthError::Server("try again".into()));
    };
    let prompt = tessera_core::engine::code_prompt(channel);
    let decoy =
        tessera_core::engine::Outcome::Challenge(Box::new(tessera_core::engine::Challenged {
            transaction_id: id,
            message: prompt.message.clone(),
            prompts: vec![prompt],
            user: tessera_core::model::User::new("".into(), "".into(), login.clone()),
            realm: tessera_core::ids::RealmName(realm.clone()),
        }));
    user_token(&state, &client, &decoy, issue).await
}

/// The method of the client's application's first factor when every way of answering it is a
/// code sent now (`sms_otp`, `mail_otp`): such logins start at `/oauth/otp/generate`.
pub(super) fn code_first_method(
    snap: &tessera_core::engine::Snapshot,
    client: &ApiClient,
) -> Option<Method> {
    let first = client
        .application
        .as_ref()
        .and_then(|a| snap.application(a))
        .and_then(|a| a.factors.first())?;
    let mut methods = first.all_methods().peekable();
    let method = *methods.peek()?;
    methods.all(|m| m.channel().is_some()).then_some(method)
}

/// `/oauth/mfa/otp/generate`: sends the pending factor's code again — by `fallbackChannel`
/// when asked — for the login whose MFA_PENDING token is the bearer.
pub(super) async fn mfa_otp_generate(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = form_once(&body)?;
    let ip = state.client_ip(peer, &headers, None);
    let p = pending_login(&state, &headers, ip, "MFA_PENDING").await?;
    if let Some(e) = lacks_required_header(&state, &headers) {
        return Err(e);
    }
    let auto_fill = state.engine.snapshot().settings.mfa_auto_fill_identifier;
    // Seed 003's errors 1601/1602: a fallback channel for phones needs the `mobile` identifier,
    // mail the `email` one, in the body (not in the query string). Left out with
    // `mfa_auto_fill_identifier`, the user's own is used.
    if let Some(channel) = params
        .get("fallbackChannel")
        .and_then(|f| tessera_core::model::Channel::parse(f))
    {
        use tessera_core::engine::ChannelError;
        let (needs, error) = if channel.is_mobile() {
            ("mobile", ChannelError::NeedsMobile)
        } else {
            ("email", ChannelError::NeedsEmail)
        };
        let in_query = uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, _)| k == "identifierType" || k == "identifierValue")
        });
        let given = params.get("identifierType").map(String::as_str);
        let fits = match given {
            Some(kind) => {
                kind == needs && params.get("identifierValue").is_some_and(|v| !v.is_empty())
            }
            None => auto_fill && !params.contains_key("identifierValue"),
        };
        if in_query || !fits {
            return Err(OAuthError::InvalidRequest(format!(
                "{error} ({}): pass identifierType={needs} and identifierValue in the body{}",
                error.code(),
                if in_query {
                    ", not in the query string"
                } else {
                    ""
                }
            )));
        }
    }
    let identifier = match (
        params.get("identifierType").map(String::as_str),
        params.get("identifierValue"),
    ) {
        (Some(kind @ ("mobile" | "email")), Some(value)) if !value.is_empty() => {
            Some((kind, value.as_str()))
        }
        (None, None) if auto_fill => None,
        (None, None) => {
            return Err(OAuthError::InvalidRequest(
                "identifierType (mobile or email) and identifierValue are required".into(),
            ));
        }
        _ => {
            return Err(OAuthError::InvalidRequest(
                "identifierType must be mobile or email, with identifierValue".into(),
            ));
        }
    };
    let outcome = state
        .engine
        .resend_code(
            &p.tx,
            params.get("fallbackChannel").map(String::as_str),
            identifier,
            &request_ctx(&p.client, ip),
        )
        .await;
    use tessera_core::engine::{Outcome, RejectReason};
    match outcome {
        Ok(Outcome::Challenge(c)) => {
            let mut res = axum::Json(json!({
                "mfa": c.prompts.iter().map(|p| json!({
                    "type": p.kind, "message": p.message, "client_mode": p.client_mode.as_str(),
                })).collect::<Vec<_>>(),
            }))
            .into_response();
            no_store(&mut res);
            Ok(res)
        }
        Ok(Outcome::Reject(r)) if r.reason == RejectReason::IdentifierMismatch => {
            Err(OAuthError::InvalidRequest(
                "identifierValue is not the user's phone number or mail address".into(),
            ))
        }
        Ok(Outcome::Reject(r)) => match r.reason {
            RejectReason::SendLimit => Err(OAuthError::TooManyRequests {
                why: "too many codes were sent to this user within the hour".into(),
                retry_after: 3600,
            }),
            RejectReason::NoUsableToken => Err(OAuthError::InvalidRequest(
                "this factor is not answered with a code sent".into(),
            )),
            _ => Err(OAuthError::InvalidGrant(
                "the session is over (expired, finished or too many wrong answers)".into(),
            )),
        },
        Ok(Outcome::Accept(_)) => Err(OAuthError::Server("try again".into())),
        Err(tessera_core::engine::EngineError::Channel(c)) => {
            Err(OAuthError::InvalidRequest(format!("{c} ({})", c.code())))
        }
        Err(e) => Err(OAuthError::engine(&e, "MFA code not sent again")),
    }
}
