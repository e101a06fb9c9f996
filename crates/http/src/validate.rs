//! The privacyIDEA/eduMFA validate API (reference §3.2–3.5) and `/auth`.

use crate::params::Params;
use crate::pi::{PiError, envelope};
use crate::{HttpState, St};
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Instant;
use tessera_core::engine::{
    AuthRequest, Challenged, Door, EngineError, Outcome, PollStatus, REJECT_MESSAGE, RejectReason,
    RequestCtx, Triggered,
};
use tessera_core::ids::{AppName, Serial, TransactionId, login_name_ok};
use tessera_core::model::{AdminSession, ApiClient, ApiClientKind, TokenKind, User};
use zeroize::Zeroizing;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/validate/check",
            get(post_validate_check).post(post_validate_check),
        )
        .route(
            "/validate/radiuscheck",
            get(post_validate_radiuscheck).post(post_validate_radiuscheck),
        )
        .route(
            "/validate/samlcheck",
            get(post_validate_samlcheck).post(post_validate_samlcheck),
        )
        .route(
            "/validate/triggerchallenge",
            get(post_validate_triggerchallenge).post(post_validate_triggerchallenge),
        )
        .route(
            "/validate/polltransaction",
            get(get_validate_polltransaction),
        )
        .route(
            "/validate/polltransaction/{transaction_id}",
            get(get_validate_polltransaction_path),
        )
        .route("/auth", axum::routing::post(post_auth))
}

fn auth_request(p: &Params) -> Result<AuthRequest, PiError> {
    let pass = p
        .get("pass")
        .ok_or_else(|| PiError::parameter("Missing parameter: 'pass'"))?;
    let user = p.non_empty("user");
    let serial = p.non_empty("serial");
    let transaction_id =
        match p.non_empty("transaction_id").or(p.non_empty("state")) {
            Some(t) => Some(TransactionId::parse(t).ok_or_else(|| {
                PiError::parameter("Parameter 'transaction_id' must be 20 digits")
            })?),
            None => None,
        };
    if user.is_none() && serial.is_none() && transaction_id.is_none() {
        return Err(PiError::parameter("Missing parameter: 'user' or 'serial'"));
    }
    if !user.is_none_or(login_name_ok) || !p.get("realm").is_none_or(login_name_ok) {
        return Err(PiError::parameter(
            "Parameter 'user' or 'realm' is too long or holds control characters",
        ));
    }
    if serial.is_some_and(|s| s.len() > 64) {
        return Err(PiError::parameter("Parameter 'serial' is too long"));
    }
    let token_kind = match p.non_empty("type") {
        Some(t) => Some(
            TokenKind::parse(t)
                .ok_or_else(|| PiError::parameter(format!("Unknown token type '{t}'")))?,
        ),
        None => None,
    };
    Ok(AuthRequest {
        user: user.map(str::to_string),
        realm: p.non_empty("realm").map(str::to_string),
        pass: Zeroizing::new(pass.to_string()),
        transaction_id,
        serial: serial.map(Serial::from),
        token_kind,
        // Decided by the caller (`check`): only an administrator's token test may leave the PIN
        // out.
        otp_only: false,
        fallback_channel: p.non_empty("fallbackChannel").map(str::to_string),
        code_first: false,
    })
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// The URL's query string names `pass`.
fn query_has_pass(query: Option<&str>) -> bool {
    query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "pass"))
}

/// Runs one leg through the engine, with metrics. `query`: the URL's query string.
async fn check(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: &Params,
    query: Option<&str>,
    door: Door,
) -> Result<Outcome, PiError> {
    if query_has_pass(query) && state.engine.snapshot().settings.refuse_pass_in_query {
        return Err(PiError::parameter(
            "Send 'pass' in the request body (POST): a URL's query string ends up in access logs",
        ));
    }
    let mut req = auth_request(params)?;
    let mut ctx = RequestCtx {
        client_ip: Some(state.client_ip(peer, headers, params.non_empty("client"))),
        user_agent: user_agent(headers),
        ..RequestCtx::new(door)
    };
    // An API client's access token as bearer (seed 000's agents: Windows logon, ADFS, PAM):
    // its logins go through the client's application and are bound to the client. An
    // application may take no request without one.
    let caller = api_caller(state, peer, headers).await?;
    if let Some(client) = &caller {
        ctx.client = Some(client.name.clone());
        ctx.actor = format!("api:{}", client.name);
        if client.application.is_some() {
            ctx.application = client.application.clone();
        }
    }
    let snap = state.engine.snapshot();
    let app = ctx
        .application
        .clone()
        .unwrap_or_else(|| AppName(snap.settings.validate_application.clone()));
    if caller.is_none()
        && snap
            .application(&app)
            .is_some_and(|a| a.require_client_token)
    {
        return Err(PiError {
            message: "Authentication failure. This application takes requests only with an API \
                      client's access token (scope validate) as bearer"
                .into(),
            ..PiError::unauthorized()
        });
    }
    // `otponly` (the OTP without the token PIN) is privacyIDEA's token test from its management
    // UI: honoured only for an administrator signed in through `/auth` who names the token by
    // `serial`. From anyone else it is ignored, so that a request parameter never switches the
    // PIN off.
    if params.flag("otponly") && req.serial.is_some() {
        if let Some(admin) = token_tester(state, headers).await? {
            req.otp_only = true;
            ctx.actor = format!("admin:{admin}");
        } else {
            tracing::debug!("otponly ignored: not an administrator's token test");
        }
    }
    let started = Instant::now();
    // The hashing queue's turn goes to the end user a trusted proxy names (`client`), so that a
    // FreeRADIUS or simpleSAMLphp in front of Tessera does not put all its users in one turn.
    let outcome =
        tessera_core::hashing::as_caller(ctx.client_ip, state.engine.authenticate(&req, &ctx))
            .await
            .map_err(|e| internal(state, &e))?;
    let result = outcome.result_str();
    metrics::counter!("tessera_auth_decisions_total", "door" => door.as_str(), "result" => result)
        .increment(1);
    metrics::histogram!("tessera_auth_duration_seconds", "door" => door.as_str(), "result" => result)
        .record(started.elapsed().as_secs_f64());
    Ok(outcome)
}

fn internal(state: &HttpState, e: &EngineError) -> PiError {
    if e.is_busy() {
        tracing::warn!(error = %e, "request shed");
        return PiError::busy();
    }
    // A channel the request asked for that cannot be used: seed 003's documented codes.
    if let EngineError::Channel(c) = e {
        return PiError {
            http: StatusCode::BAD_REQUEST,
            code: c.code(),
            message: c.to_string(),
            retry_after: None,
        };
    }
    let id = state.error_id();
    tracing::error!(error_id = %id, error = %e, "request failed");
    PiError::internal(&id)
}

fn challenge_detail(c: &Challenged) -> Value {
    let tx = c.transaction_id.as_str();
    let multi: Vec<Value> = c
        .prompts
        .iter()
        .map(|p| {
            json!({
                "transaction_id": tx,
                "serial": p.serial.as_ref().map(|s| s.as_str()).unwrap_or(""),
                "type": p.kind,
                "client_mode": p.client_mode.as_str(),
                "message": p.message,
                "attributes": Value::Null,
            })
        })
        .collect();
    let mut messages: Vec<&str> = Vec::new();
    for p in &c.prompts {
        if !messages.contains(&p.message.as_str()) {
            messages.push(&p.message);
        }
    }
    let last = c.prompts.last();
    json!({
        "transaction_id": tx,
        "transaction_ids": c.prompts.iter().map(|_| tx).collect::<Vec<_>>(),
        "multi_challenge": multi,
        "message": c.message,
        "messages": messages,
        "serial": last.and_then(|p| p.serial.as_ref()).map(|s| s.as_str()).unwrap_or(""),
        "type": last.map(|p| p.kind.as_str()).unwrap_or(""),
        "preferred_client_mode": "interactive",
    })
}

/// Maps an outcome to the validate API's answer.
fn outcome_response(state: &HttpState, outcome: &Outcome) -> Result<Value, PiError> {
    Ok(match outcome {
        Outcome::Accept(a) => {
            let mut detail = json!({ "message": a.message });
            if let Some(serial) = &a.serial {
                detail["serial"] = json!(serial.as_str());
            }
            if let Some(kind) = a.token_kind {
                detail["type"] = json!(kind.as_str());
            }
            envelope(json!(true), Some("ACCEPT"), detail)
        }
        Outcome::Challenge(c) => envelope(json!(false), Some("CHALLENGE"), challenge_detail(c)),
        Outcome::Reject(r) => {
            if r.reason == RejectReason::UnknownUser
                && state.engine.snapshot().settings.unknown_user_error
            {
                return Err(PiError::user_not_found());
            }
            envelope(
                json!(false),
                Some("REJECT"),
                json!({ "message": REJECT_MESSAGE }),
            )
        }
    })
}

/// `/validate/check`: one leg of a login.
async fn post_validate_check(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, PiError> {
    let outcome = check(&state, peer, &headers, &params, uri.query(), Door::Validate).await?;
    Ok(Json(outcome_response(&state, &outcome)?))
}

/// `/validate/radiuscheck`: 204 when accepted, 400 with an empty body otherwise.
async fn post_validate_radiuscheck(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    params: Params,
) -> Response {
    match check(&state, peer, &headers, &params, uri.query(), Door::Validate).await {
        Ok(Outcome::Accept(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => StatusCode::BAD_REQUEST.into_response(),
        // Faults, load (429, 503 with Retry-After) and a missing or bad agent token (401) are
        // not a rejected login: the client learns what to do.
        Err(e)
            if e.http.is_server_error()
                || e.http == StatusCode::TOO_MANY_REQUESTS
                || e.http == StatusCode::UNAUTHORIZED =>
        {
            e.into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The attributes the `saml_attributes` setting names: the standard ones, and any other the
/// user's directory entry carries (one value as text, several as a list; absent ones left out).
fn saml_attributes(user: &User, realm: &str, names: &str) -> Value {
    let mut out = serde_json::Map::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let value = match name {
            "username" => json!(user.username),
            "realm" => json!(realm),
            "resolver" => json!(user.source.as_str()),
            "email" => json!(user.email),
            "givenname" => json!(user.given_name),
            "surname" => json!(user.surname),
            "mobile" | "phone" => json!(user.phone),
            "groups" => json!(user.groups),
            other => match user.attributes.get(&other.to_ascii_lowercase()) {
                Some(values) if values.len() == 1 => json!(values[0]),
                Some(values) => json!(values),
                None => continue,
            },
        };
        out.insert(name.to_string(), value);
    }
    Value::Object(out)
}

/// `/validate/samlcheck` (eduMFA): `value` is `{auth, attributes}`.
async fn post_validate_samlcheck(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, PiError> {
    let outcome = check(&state, peer, &headers, &params, uri.query(), Door::Validate).await?;
    let settings = state.engine.snapshot().settings.clone();
    let realm = |r: &str| r.to_string();
    let (auth, attributes) = match &outcome {
        Outcome::Accept(a) if settings.include_saml_attributes => (
            true,
            saml_attributes(&a.user, &realm(a.realm.as_str()), &settings.saml_attributes),
        ),
        Outcome::Accept(_) => (true, json!({})),
        Outcome::Reject(r)
            if settings.include_saml_attributes && settings.include_saml_attributes_on_fail =>
        {
            let attrs = r
                .user
                .as_ref()
                .map(|u| saml_attributes(u, "", &settings.saml_attributes))
                .unwrap_or_else(|| json!({}));
            (false, attrs)
        }
        Outcome::Reject(_) | Outcome::Challenge(_) => (false, json!({})),
    };
    let mut body = outcome_response(&state, &outcome)?;
    body["result"]["value"] = json!({ "auth": auth, "attributes": attributes });
    Ok(Json(body))
}

/// The bearer token of `/auth`, from `PI-Authorization` or `Authorization` (with or without
/// `Bearer`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let raw = headers
        .get("pi-authorization")
        .or_else(|| headers.get(header::AUTHORIZATION))?
        .to_str()
        .ok()?
        .trim();
    Some(raw.strip_prefix("Bearer ").unwrap_or(raw).trim())
}

/// The live administrator session of the request's `/auth` token, if it carries one.
async fn signed_in(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<Option<AdminSession>, PiError> {
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    state.admin.session(token).await.map_err(|e| {
        let id = state.error_id();
        tracing::error!(error_id = %id, error = %e, "session lookup failed");
        PiError::internal(&id)
    })
}

async fn session(state: &HttpState, headers: &HeaderMap) -> Result<AdminSession, PiError> {
    signed_in(state, headers)
        .await?
        .ok_or_else(PiError::unauthorized)
}

/// The agent (API client) whose access token the request carries as bearer (a JWT; an
/// administrator's `/auth` token is none), if it may call: the token active and an agent's
/// (client credentials; a signed-in user's token is none), the client and the token with the
/// scope `validate`, from an address the client may call from. A token that is none of that is
/// refused rather than ignored.
async fn api_caller(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Option<ApiClient>, PiError> {
    let Some(token) = bearer(headers).filter(|t| t.split('.').count() == 3) else {
        return Ok(None);
    };
    let ip = state.client_ip(peer, headers, None);
    match crate::oauth::agent_of_token(state, token).await {
        Some((client, scopes))
            if client.kind == ApiClientKind::Agent
                && scopes.iter().any(|s| s == "validate")
                && client.has_scope("validate")
                && client.allows_ip(ip) =>
        {
            Ok(Some(client))
        }
        _ => Err(PiError {
            message: "Authentication failure. The token is no agent's access token (client \
                      credentials), is expired, revoked or not ours, lacks the scope validate, \
                      or comes from an address the client may not call from"
                .into(),
            ..PiError::unauthorized()
        }),
    }
}

/// The administrator (role `admin`) whose `/auth` token the request carries, if any: who may
/// test a token with `otponly`.
async fn token_tester(state: &HttpState, headers: &HeaderMap) -> Result<Option<String>, PiError> {
    Ok(signed_in(state, headers)
        .await?
        .filter(|s| s.role.can_write())
        .map(|s| s.admin))
}

/// `/validate/triggerchallenge`: a service account asks for challenges on a user's behalf.
async fn post_validate_triggerchallenge(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, PiError> {
    let session = session(&state, &headers).await?;
    if !session.role.can_trigger_challenge() {
        return Err(PiError::forbidden(
            "This account may not trigger challenges (role admin or service needed)",
        ));
    }
    let user = params
        .non_empty("user")
        .ok_or_else(|| PiError::parameter("Missing parameter: 'user'"))?;
    if !login_name_ok(user) || !params.get("realm").is_none_or(login_name_ok) {
        return Err(PiError::parameter(
            "Parameter 'user' or 'realm' is too long or holds control characters",
        ));
    }
    let serial = params.non_empty("serial").map(Serial::from);
    let ctx = RequestCtx {
        client_ip: Some(state.client_ip(peer, &headers, params.non_empty("client"))),
        user_agent: user_agent(&headers),
        actor: format!("{}:{}", session.role.as_str(), session.admin),
        ..RequestCtx::new(Door::Validate)
    };
    let triggered = state
        .engine
        .trigger_challenge(
            user,
            params.non_empty("realm"),
            serial.as_ref(),
            params.non_empty("fallbackChannel"),
            &ctx,
        )
        .await
        .map_err(|e| internal(&state, &e))?;
    match triggered {
        Triggered::UnknownUser => Err(PiError::user_not_found()),
        Triggered::Challenges(None) => Ok(Json(envelope(
            json!(0),
            None,
            json!({ "multi_challenge": [], "messages": [], "transaction_ids": [], "message": "" }),
        ))),
        Triggered::Challenges(Some(c)) => Ok(Json(envelope(
            json!(c.prompts.len()),
            None,
            challenge_detail(&c),
        ))),
    }
}

async fn poll(state: &HttpState, id: &str) -> Result<Json<Value>, PiError> {
    let id = TransactionId::parse(id)
        .ok_or_else(|| PiError::parameter("Parameter 'transaction_id' must be 20 digits"))?;
    let status = state
        .engine
        .poll_transaction(&id)
        .await
        .map_err(|e| internal(state, &e))?;
    let (value, text) = match status {
        PollStatus::Accept => (true, "accept"),
        PollStatus::Declined => (false, "declined"),
        PollStatus::Pending => (false, "pending"),
    };
    Ok(Json(envelope(
        json!(value),
        None,
        json!({ "challenge_status": text }),
    )))
}

/// `/validate/polltransaction?transaction_id=…`: was the challenge answered out of band?
async fn get_validate_polltransaction(state: St, params: Params) -> Result<Json<Value>, PiError> {
    let id = params
        .non_empty("transaction_id")
        .ok_or_else(|| PiError::parameter("Missing parameter: 'transaction_id'"))?;
    poll(&state, id).await
}

async fn get_validate_polltransaction_path(
    state: St,
    Path(id): Path<String>,
) -> Result<Json<Value>, PiError> {
    poll(&state, &id).await
}

/// `/auth`: signs an administrator or service account in; the token goes into
/// `PI-Authorization` (or `Authorization`) of later requests.
async fn post_auth(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, PiError> {
    let username = params
        .non_empty("username")
        .ok_or_else(|| PiError::parameter("Missing parameter: 'username'"))?;
    let password = params
        .get("password")
        .ok_or_else(|| PiError::parameter("Missing parameter: 'password'"))?;
    if !login_name_ok(username) {
        return Err(PiError::parameter(
            "Parameter 'username' is too long or holds control characters",
        ));
    }
    let ip = state.client_ip(peer, &headers, None);
    let result = state
        .admin
        .login(username, password, Some(ip))
        .await
        .map_err(|e| match e {
            tessera_core::admin::AdminError::Engine(e) if e.is_busy() => PiError::busy(),
            e => {
                let id = state.error_id();
                tracing::error!(error_id = %id, error = %e, "login failed");
                PiError::internal(&id)
            }
        })?;
    let Some(login) = result else {
        return Err(PiError::auth_failed());
    };
    let role = login.session.role;
    Ok(Json(envelope(
        json!({
            "token": login.token.as_str(),
            "username": login.session.admin,
            "role": "admin",
            "tessera_role": role.as_str(),
            "realm": "",
            "rights": if role.can_trigger_challenge() { vec!["triggerchallenge"] } else { vec![] },
            "expires_at": login.session.expires_at,
        }),
        None,
        json!({}),
    )))
}
