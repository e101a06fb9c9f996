//! The sign-in itself: the login flow kept under its cookie, the first page and the next
//! factors' pages, and the end of a sign-in (the SSO session, then the relying party).

use super::*;
use crate::oauth::issuer;
use crate::{HttpState, St};
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use tessera_core::engine::{AuthRequest, Door, Outcome, RejectReason, RequestCtx};
use tessera_core::sso::{AuthCode, SessionLimits, SignIn, SignedIn};

/// Keeps a new login flow and sends the browser to the login page with its cookie.
pub(crate) async fn begin(state: &HttpState, key: &str, flow: &Flow) -> Response {
    let now = state.engine.clock().now();
    let lifetime = i64::from(state.engine.snapshot().settings.api_session_minutes) * 60;
    if let Err(res) = save_flow(state, key, flow, now + lifetime).await {
        return res;
    }
    let mut res = redirect("/login");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, FLOW_COOKIE, key, lifetime),
    );
    res
}

pub(super) async fn save_flow(
    state: &HttpState,
    key: &str,
    flow: &Flow,
    expires_at: i64,
) -> Result<(), Response> {
    state
        .engine
        .sso()
        .keep_flow(key, flow, expires_at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "login flow not kept");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })
}

pub(super) async fn load_flow(
    state: &HttpState,
    headers: &HeaderMap,
) -> Option<(String, Flow, i64)> {
    let key = cookie(state, headers, FLOW_COOKIE)?;
    let (flow, expires_at) = state.engine.sso().flow(&key).await.ok()??;
    Some((key, flow, expires_at))
}

/// What the first page asks for beside the user name, as the key of its words: `password`,
/// `pin_code` (the token PIN and a code, in one field), `password_code` (the password and a
/// code) or `password_or_code` (either, by the user's means); none when the first factor sends
/// a code once the user is named.
pub(super) fn first_answer(state: &HttpState, app: &str) -> Option<&'static str> {
    use tessera_core::model::Method;
    let snap = state.engine.snapshot();
    let Some(first) = snap
        .application(&tessera_core::ids::AppName(app.to_string()))
        .and_then(|a| a.factors.first())
    else {
        return Some("password");
    };
    let typed: Vec<Method> = first
        .all_methods()
        .filter(|m| m.channel().is_none())
        .collect();
    let pin_code = typed.contains(&Method::SoftOtp);
    let password_code = typed.contains(&Method::PasswordOtp);
    let password = typed.iter().any(|m| !m.uses_otp());
    match (password, password_code, pin_code) {
        (false, false, false) => None,
        (false, false, true) => Some("pin_code"),
        (false, true, false) => Some("password_code"),
        (true, false, false) => Some("password"),
        _ => Some("password_or_code"),
    }
}

/// The first page of a sign-in (the user name, and what the first factor asks for), with the
/// words of a failed first step fitting what was asked.
pub(super) fn first_page<'a>(
    state: &HttpState,
    flow: &'a Flow,
    brand: &'a Brand,
    error: Option<&'a str>,
) -> Page<'a> {
    let answer = first_answer(state, &flow.app);
    let error = match (error, answer) {
        (Some("failed"), Some("pin_code" | "password_code" | "password_or_code")) => {
            Some("failed_code")
        }
        (e, _) => e,
    };
    Page {
        ask_password: answer,
        pin_first: state.engine.snapshot().settings.prepend_pin,
        ..flow_page(flow, brand, error)
    }
}

pub(super) fn flow_page<'a>(flow: &'a Flow, brand: &'a Brand, error: Option<&'a str>) -> Page<'a> {
    Page {
        hidden: Vec::new(),
        lang: &flow.lang,
        app_title: &brand.title,
        brand: Some(brand),
        step: if flow.tx.is_some() {
            "answer"
        } else {
            "identify"
        },
        csrf: &flow.csrf,
        error,
        username: flow.user.as_deref().unwrap_or(""),
        ask_password: None,
        pin_first: true,
        prompt: flow.prompt.as_deref().unwrap_or(""),
        answer_type: "text",
        done: false,
        fatal: false,
    }
}

pub(super) async fn login_page(state: St, headers: HeaderMap) -> Response {
    let Some((_, flow, _)) = load_flow(&state, &headers).await else {
        let lang = lang_of(&headers, None);
        // Opened directly (no sign-in under way): the user's own account pages.
        if cookie(&state, &headers, FLOW_COOKIE).is_none() {
            return account_sign_in(&state, &headers, &lang).await;
        }
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    let title = flow_brand(&state, &flow);
    let page = if flow.tx.is_some() {
        flow_page(&flow, &title, None)
    } else {
        first_page(&state, &flow, &title, None)
    };
    render(page, StatusCode::OK)
}

/// The branding of a sign-in's pages; a sign-in to the account pages is headed as such unless
/// the application's branding names it.
pub(super) fn flow_brand(state: &HttpState, flow: &Flow) -> Brand {
    let mut b = brand(state, &flow.app, &flow.lang);
    let branded_title =
        branding_of(state, &flow.app).is_some_and(|br| br.text(&flow.lang, "title").is_some());
    if flow.account && !branded_title {
        let t = texts(&flow.lang);
        b.title = t["account"].as_str().unwrap_or_default().to_string();
        if b.intro.is_none() {
            b.intro = t["account_intro"].as_str().map(str::to_string);
        }
    }
    b
}

/// `/login` opened directly: a browser with a live SSO session goes to its sessions; else a
/// sign-in through the `account_application` setting's application starts, which ends there.
/// With that setting empty, the page says that sign-ins start at an application.
pub(super) async fn account_sign_in(
    state: &HttpState,
    headers: &HeaderMap,
    lang: &str,
) -> Response {
    if let Some(key) = cookie(state, headers, SSO_COOKIE)
        && live_session(state, &key).await.is_some()
    {
        return redirect("/login/sessions");
    }
    let snap = state.engine.snapshot();
    let app = snap.settings.account_application.clone();
    if app.is_empty()
        || snap
            .application(&tessera_core::ids::AppName(app.clone()))
            .is_none()
    {
        return home_page(state, lang);
    }
    let key = state.engine.sso().new_key();
    let flow = Flow {
        account: true,
        ..Flow::without_oidc(state, &app, lang)
    };
    // The page itself, not a redirect to it: a browser that keeps no cookies would be sent
    // round in circles.
    let now = state.engine.clock().now();
    let lifetime = i64::from(state.engine.snapshot().settings.api_session_minutes) * 60;
    if let Err(res) = save_flow(state, &key, &flow, now + lifetime).await {
        return res;
    }
    let title = flow_brand(state, &flow);
    let mut res = render(first_page(state, &flow, &title, None), StatusCode::OK);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, FLOW_COOKIE, &key, lifetime),
    );
    res
}

pub(super) async fn login_post(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = query(std::str::from_utf8(&body).ok()) else {
        let lang = lang_of(&headers, None);
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    let Some((key, mut flow, expires_at)) = load_flow(&state, &headers).await else {
        let lang = lang_of(&headers, None);
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    // The form must come from the page this browser was shown (login CSRF).
    if !same_token(form.get("csrf"), &flow.csrf) {
        return fatal(&flow.lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    let title = flow_brand(&state, &flow);
    let answer = form.get("answer").cloned().unwrap_or_default();
    // No password or code is this long (as at the password grant): not worth hashing.
    if answer.len() > 1024 {
        let first = flow.tx.is_none();
        let page = if first {
            first_page(&state, &flow, &title, Some("failed"))
        } else {
            flow_page(&flow, &title, Some("wrong"))
        };
        return render(page, StatusCode::OK);
    }
    let ip = state.client_ip(peer, &headers, None);
    let ctx = RequestCtx {
        client_ip: Some(ip),
        application: Some(tessera_core::ids::AppName(flow.app.clone())),
        actor: "web".into(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        ..RequestCtx::new(Door::Web)
    };
    let req = match (&flow.tx, &flow.user) {
        (Some(tx), Some(user)) => AuthRequest {
            user: Some(user.clone()),
            transaction_id: tessera_core::ids::TransactionId::parse(tx),
            pass: zeroize::Zeroizing::new(answer),
            ..Default::default()
        },
        _ => {
            let username = form
                .get("username")
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty() && tessera_core::ids::login_name_ok(u));
            let Some(username) = username else {
                let page = first_page(&state, &flow, &title, Some("failed"));
                return render(page, StatusCode::OK);
            };
            flow.user = Some(username.clone());
            AuthRequest {
                user: Some(username),
                pass: zeroize::Zeroizing::new(answer),
                ..Default::default()
            }
        }
    };
    let first_step = flow.tx.is_none();
    let code_first = first_answer(&state, &flow.app).is_none();
    // A sign-in whose answers cannot finish (an unknown user's code page) is answered alike.
    if flow.dummy {
        return render(flow_page(&flow, &title, Some("wrong")), StatusCode::OK);
    }
    let outcome = match state.engine.authenticate(&req, &ctx).await {
        Ok(o) => o,
        // A user without the phone or mail a code needs: like an unknown user.
        Err(tessera_core::engine::EngineError::Channel(_)) if first_step && code_first => {
            return code_page_for_nobody(&state, &key, flow, expires_at, &title).await;
        }
        Err(e) if e.is_busy() => {
            tracing::warn!(error = %e, "web login shed");
            let mut res = fatal(&flow.lang, PageError::Busy, StatusCode::SERVICE_UNAVAILABLE);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        Err(e) => {
            tracing::error!(error = %e, "web login failed");
            return fatal(
                &flow.lang,
                PageError::Expired,
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    match outcome {
        Outcome::Reject(_) if first_step && code_first => {
            code_page_for_nobody(&state, &key, flow, expires_at, &title).await
        }
        Outcome::Accept(a) => finish_login(&state, &headers, &key, &flow, &a, ip).await,
        Outcome::Challenge(c) => {
            flow.tx = Some(c.transaction_id.as_str().to_string());
            flow.user = Some(c.user.username.clone());
            flow.prompt = Some(c.message.clone());
            if let Err(res) = save_flow(&state, &key, &flow, expires_at).await {
                return res;
            }
            render(flow_page(&flow, &title, None), StatusCode::OK)
        }
        Outcome::Reject(r) => {
            // A lock is said as such: unknown names lock alike, so it tells nobody who exists.
            let error = match (&flow.tx, r.reason) {
                (_, RejectReason::Locked) => "locked",
                (None, _) => "failed",
                (Some(_), RejectReason::BadTransaction | RejectReason::SessionRetries) => "expired",
                (Some(_), _) => "wrong",
            };
            if flow.tx.is_none() || error == "expired" || error == "locked" {
                // Back to the start: the user is named again.
                flow.tx = None;
                flow.prompt = None;
                if let Err(res) = save_flow(&state, &key, &flow, expires_at).await {
                    return res;
                }
            }
            let page = if flow.tx.is_none() {
                first_page(&state, &flow, &title, Some(error))
            } else {
                flow_page(&flow, &title, Some(error))
            };
            render(page, StatusCode::OK)
        }
    }
}

/// The page a known user would see after a code was sent, for a user who gets none (unknown,
/// or without a phone): nothing tells them apart (DESIGN §5); no answer finishes it.
pub(super) async fn code_page_for_nobody(
    state: &HttpState,
    key: &str,
    mut flow: Flow,
    expires_at: i64,
    title: &Brand,
) -> Response {
    let snap = state.engine.snapshot();
    let method = snap
        .application(&tessera_core::ids::AppName(flow.app.clone()))
        .and_then(|a| a.factors.first())
        .and_then(|f| f.all_methods().next())
        .unwrap_or(tessera_core::model::Method::SmsOtp);
    let channel = tessera_core::engine::expected_channel(&snap.settings, method, None, false)
        .unwrap_or(tessera_core::model::Channel::Sms);
    flow.tx = Some(tessera_core::rng::random_digits(
        state.engine.rng(),
        tessera_core::ids::TransactionId::LEN,
    ));
    flow.prompt = Some(tessera_core::engine::code_prompt(channel).message);
    flow.dummy = true;
    if let Err(res) = save_flow(state, key, &flow, expires_at).await {
        return res;
    }
    render(flow_page(&flow, title, None), StatusCode::OK)
}

/// The user passed every factor: the SSO session (new, or the browser's own for the same user
/// gains the application), the code, and back to the relying party.
pub(super) async fn finish_login(
    state: &HttpState,
    headers: &HeaderMap,
    flow_key: &str,
    flow: &Flow,
    accepted: &tessera_core::engine::Accepted,
    ip: std::net::IpAddr,
) -> Response {
    let (user, realm, mfa) = (
        accepted.user.username.as_str(),
        accepted.realm.as_str(),
        accepted.mfa,
    );
    let now = state.engine.clock().now();
    let settings = state.engine.snapshot().settings.clone();
    // An OIDC sign-in needs the issuer for its code: checked before anything is kept.
    let iss = if flow.saml.is_none() && !flow.account {
        match issuer(state) {
            Ok(i) => Some(i),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let existing = cookie(state, headers, SSO_COOKIE);
    let signed_in = state
        .engine
        .sso()
        .sign_in(
            SignIn {
                existing: existing.as_deref(),
                user,
                realm,
                app: &flow.app,
                mfa,
                client_ip: ip.to_string(),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(256).collect())
                    .unwrap_or_default(),
            },
            SessionLimits::of(&settings),
        )
        .await;
    let SignedIn {
        key: session_key,
        session,
        expires_at,
        ended,
    } = match signed_in {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "SSO session not kept");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    // Another user's session ended here: its OIDC relying parties are told by back-channel
    // (its SAML service providers cannot be, in the middle of this sign-in: logged).
    if let Some(other) = &ended {
        crate::backchannel::notify(state, std::slice::from_ref(other));
        if !other.saml.is_empty() {
            tracing::info!(
                user = %other.user,
                sps = other.saml.len(),
                "another user signed in: the previous SSO session ended without SAML logout"
            );
        }
    }
    if let Err(e) = state.engine.sso().end_flow(flow_key).await {
        tracing::warn!(error = %e, "finished login flow not removed");
    }
    if let Some(pending) = &flow.saml {
        let (res, joined) = crate::saml::answer(
            state,
            &flow.lang,
            pending,
            &flow.app,
            user,
            realm,
            session.auth_time,
            mfa,
        )
        .await;
        if let Some(p) = joined {
            remember_saml(state, &session_key, p).await;
        }
        return with_session(state, res, &session_key, expires_at - now);
    }
    let Some(iss) = iss else {
        // A sign-in to the account pages: on to the user's sessions.
        let res = redirect("/login/sessions");
        return with_session(state, res, &session_key, expires_at - now);
    };
    let code = AuthCode {
        client_id: flow.client_id.clone(),
        redirect_uri: flow.redirect_uri.clone(),
        code_challenge: flow.code_challenge.clone(),
        nonce: flow.nonce.clone(),
        user: user.to_string(),
        realm: realm.to_string(),
        scope: flow.scope.clone(),
        auth_time: session.auth_time,
        sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
    };
    let res = match issue_code(state, &code, flow.state.as_deref(), &iss).await {
        Ok(res) => {
            remember_oidc(state, &session_key, &flow.client_id).await;
            res
        }
        Err(res) => res,
    };
    with_session(state, res, &session_key, expires_at - now)
}

/// The end of a sign-in: the browser keeps the SSO session's cookie and drops the flow's.
pub(super) fn with_session(
    state: &HttpState,
    mut res: Response,
    key: &str,
    max_age: i64,
) -> Response {
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(state, SSO_COOKIE, key, max_age),
    );
    h.append(header::SET_COOKIE, set_cookie(state, FLOW_COOKIE, "", 0));
    res
}
