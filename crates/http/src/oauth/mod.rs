//! OAuth2 for API clients: `/oauth/token` (client credentials), `/oauth/introspect` (RFC 7662),
//! `/oauth/revoke` (RFC 7009), `/oauth/jwks` and the authorization-server metadata (RFC 8414).
//! Access tokens are JWTs (RFC 9068) signed with ES256. The signature is made and checked with
//! ring (already Tessera's TLS crypto) rather than a JWT crate: one algorithm, a few lines, and
//! no RSA code in the build.

mod error;

use crate::{HttpState, St};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::BASE64URL_NOPAD;
pub(crate) use error::OAuthError;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tessera_core::ids::login_name_ok;
use tessera_core::model::{ApiClient, ApiClientKind, AuditRecord, Method};

/// Where the signing key is kept (sealed) in the store's meta table.
use tessera_core::keys::KeySlot;
use tessera_core::sso::{TokenAsk, TokenRole};

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/mfa", post(mfa))
        .route("/oauth/mfa/otp/validate", post(mfa))
        .route("/oauth/mfa/otp/generate", post(mfa_otp_generate))
        .route("/oauth/mfa/password/setup", post(mfa_password_setup))
        .route("/oauth/mfa/password/reset", post(mfa_password_reset))
        .route("/oauth/otp/generate", post(otp_generate))
        .route("/oauth/otp/validate", post(otp_validate))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/openapi.json", get(openapi))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

/// The signing key, loaded (or made, once for all nodes) on first use.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

/// The token signer, or the answer when its key cannot be had.
pub(crate) async fn token_signer(state: &HttpState) -> Result<Arc<Signer>, OAuthError> {
    signer(state).await.map_err(|e| {
        tracing::error!(error = %e, "OAuth signing key unavailable");
        OAuthError::Server("no signing key".into())
    })
}

/// Audits what a client did with a code or token it should not have had again.
pub(crate) async fn audit_reuse(
    state: &HttpState,
    client: &ApiClient,
    action: &str,
    (user, realm): (String, String),
    result: &str,
    reason: String,
) {
    let record = AuditRecord::event(
        state.engine.clock().now_millis(),
        "api",
        format!("api:{}", client.name),
        action,
    )
    .user(Some(user), Some(realm))
    .application(client.application.as_ref().map(|a| a.0.clone()))
    .ended(result, reason);
    if let Err(e) = state.engine.audit(&record).await {
        tracing::warn!(error = %e, "{action} not audited");
    }
}

pub(crate) async fn signer(state: &HttpState) -> Result<Arc<Signer>, String> {
    state
        .oauth_signer
        .get_or_try_init(|| async {
            let keys = state.engine.keys();
            let rng = SystemRandom::new();
            let stored = keys
                .stored_or_made(KeySlot::OauthSigning, || {
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map(|d| zeroize::Zeroizing::new(d.as_ref().to_vec()))
                        .map_err(|_| "cannot make a signing key".to_string())
                })
                .await
                .map_err(|e| e.to_string())?;
            let pkcs8 = keys
                .open(KeySlot::OauthSigning, &stored)
                .map_err(|e| e.to_string())?;
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                .map_err(|_| "the stored signing key cannot be read".to_string())?;
            let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
            let kid = data_encoding::HEXLOWER.encode(&digest.as_ref()[..8]);
            Ok(Arc::new(Signer { key, kid, rng }))
        })
        .await
        .cloned()
}

impl Signer {
    fn sign(&self, claims: &Value) -> Result<String, String> {
        self.sign_typed(claims, "at+jwt")
    }

    /// Signs `claims` as a JWT of type `typ` (`at+jwt` access tokens, `JWT` ID tokens).
    pub(crate) fn sign_typed(&self, claims: &Value, typ: &str) -> Result<String, String> {
        let header = json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        // ring signs with either s; the token's one valid form has the low one (see `verify`).
        let sig = p256::ecdsa::Signature::from_slice(sig.as_ref())
            .map_err(|_| "signing failed".to_string())?;
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(format!(
            "{input}.{}",
            BASE64URL_NOPAD.encode(&sig.to_bytes())
        ))
    }

    /// The claims of a token this key signed, if the signature holds (expiry not checked).
    fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(h.as_bytes()).ok()?).ok()?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return None;
        }
        let sig = BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
        // (r, s) and (r, n - s) both verify; only the low-S form is taken, so that a token has
        // one valid form (a changed copy of a revoked or spent token is no new token).
        if p256::ecdsa::Signature::from_slice(&sig)
            .ok()?
            .normalize_s()
            .is_some()
        {
            return None;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .ok()?;
        serde_json::from_slice(&BASE64URL_NOPAD.decode(c.as_bytes()).ok()?).ok()
    }

    fn jwk(&self) -> Value {
        // An uncompressed P-256 point: 0x04 || x (32) || y (32).
        let p = self.key.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": BASE64URL_NOPAD.encode(&p[1..33]),
            "y": BASE64URL_NOPAD.encode(&p[33..65]),
        })
    }
}

/// The bearer token of `Authorization: Bearer …` (RFC 6750, the scheme in any case; the admin
/// API's `validate::bearer` also takes privacyIDEA's bare tokens and header).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, rest) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// 503 `temporarily_unavailable`: the store or the directory did not answer.
pub(crate) fn unavailable() -> Response {
    OAuthError::unavailable().into_response()
}

pub(crate) fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// RFC 6750's answer to a token whose client lacks `scope`.
fn insufficient_scope(scope: &str) -> OAuthError {
    OAuthError::InsufficientScope(format!(
        "this client's tokens do not carry the scope {scope}"
    ))
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::InvalidClient(description.into())
}

fn form_once(body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    crate::web::pairs_once(body)
        .map_err(|()| OAuthError::InvalidRequest("a parameter is repeated".into()))
}

/// A call authenticated by an API client: its parameters, the caller's address and the client.
async fn client_call(
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
async fn authenticate_client(
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
async fn public_client(
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

/// The issuer of tokens: the `public_url` setting, or the loopback listener's own address
/// (never what a request says its host is: the metadata and the tokens must not depend on it).
pub(crate) fn issuer(state: &HttpState) -> Result<String, OAuthError> {
    state.engine.public_url().ok_or_else(|| {
        tracing::warn!("OAuth needs the public_url setting");
        OAuthError::Unavailable("OAuth is not set up: the public_url setting is empty".into())
    })
}

async fn audit(
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
async fn rate_limited(
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
fn lacks_required_header(state: &HttpState, headers: &HeaderMap) -> Option<OAuthError> {
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

async fn token(
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
struct Issue<'a> {
    /// The role of a token for a login that waits for an answer: `OtpPending` (the first
    /// factor's code, `/oauth/otp/generate`) or `MfaPending` (a later factor).
    pending_role: TokenRole,
    /// The login had an MFA step (its refresh token follows the MFA settings).
    mfa_done: bool,
    /// The end of the login's refresh tokens, when refreshing (a renewed refresh token keeps
    /// the first one's end).
    key_expires_at: Option<i64>,
    /// The scope of a refreshed token (at most the one granted); None: the client's.
    scope: Option<&'a str>,
    /// The user's name and realm as the request gave them, for a pending token of a login
    /// started by name alone (an unknown user's answer must look the same).
    typed_user: Option<(&'a str, &'a str)>,
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
async fn refresh_grant(
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
async fn user_refresh(
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
async fn reuse_marked_since(
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
async fn spent_refresh_again(state: &HttpState, client: &ApiClient, refresh: &str) {
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
async fn user_token(
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

fn request_ctx(client: &ApiClient, ip: std::net::IpAddr) -> tessera_core::engine::RequestCtx {
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
async fn password_grant(
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

pub(crate) fn invalid_token(why: &str) -> OAuthError {
    OAuthError::InvalidToken(why.into())
}

/// A login waiting for an answer, from its pending token (the bearer).
struct Pending {
    claims: Value,
    client: ApiClient,
    tx: tessera_core::ids::TransactionId,
    user: String,
}

/// The pending login whose token (of `role`) is the request's bearer; `Err` is the answer.
async fn pending_login(
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
async fn mfa(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    answer_pending(&state, peer, &headers, &body, "MFA_PENDING").await
}

/// `/oauth/otp/validate`: the code of a session started by `/oauth/otp/generate`, whose
/// OTP_PENDING token is the bearer.
async fn otp_validate(
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
async fn answer_pending(
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
async fn finish_pending(
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
async fn mfa_password_setup(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    mfa_password_change(&state, peer, &headers, &body, false).await
}

async fn mfa_password_reset(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    mfa_password_change(&state, peer, &headers, &body, true).await
}

async fn mfa_password_change(
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
async fn otp_generate(
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
fn code_first_method(snap: &tessera_core::engine::Snapshot, client: &ApiClient) -> Option<Method> {
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
async fn mfa_otp_generate(
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

async fn introspect(
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

async fn revoke(
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

/// The OpenAPI document of these endpoints.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn jwks(state: St) -> Response {
    let rsa = match crate::rsa_key::signer(&state).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the RS256 key cannot be read");
            None
        }
    };
    match signer(&state).await {
        Ok(s) => {
            let mut keys = vec![s.jwk()];
            keys.extend(rsa.map(|r| r.jwk()));
            axum::Json(json!({ "keys": keys })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "OAuth signing key unavailable");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn metadata(state: St) -> Response {
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    axum::Json(json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/oauth/token"),
        "jwks_uri": format!("{iss}/oauth/jwks"),
        "introspection_endpoint": format!("{iss}/oauth/introspect"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "scopes_supported": tessera_core::model::api_client::SCOPES,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        for path in [
            "/oauth/token",
            "/oauth/mfa",
            "/oauth/introspect",
            "/oauth/revoke",
            "/oauth/jwks",
            "/.well-known/oauth-authorization-server",
            "/oauth/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let source = include_str!("mod.rs");
        let routes = source.matches(".route(\"").count();
        assert_eq!(
            routes,
            doc["paths"].as_object().map_or(0, |p| p.len()),
            "every route is documented"
        );
    }

    /// A token has one valid form: the signature with the low s. Its twin (r, n - s), which
    /// verifies as ECDSA too, is refused.
    #[test]
    fn es256_tokens_take_low_s_signatures_only() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let signer = Signer {
            key,
            kid: "k1".into(),
            rng,
        };
        // Signing many tokens meets high-s signatures from ring about half the time.
        for i in 0..32 {
            let token = signer.sign(&json!({"sub": "alice", "n": i})).unwrap();
            assert_eq!(signer.verify(&token).unwrap()["n"], i);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
            let low = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert!(low.normalize_s().is_none(), "signed with the low s");
            // The twin: s' = n - s.
            let (r, s) = low.split_scalars();
            let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            assert!(twin.normalize_s().is_some());
            let forged = format!("{input}.{}", BASE64URL_NOPAD.encode(&twin.to_bytes()));
            // ring alone would take it.
            let (h, c) = input.split_once('.').unwrap();
            assert!(
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.key.public_key().as_ref())
                    .verify(format!("{h}.{c}").as_bytes(), &twin.to_bytes())
                    .is_ok()
            );
            assert!(signer.verify(&forged).is_none());
        }
    }
}
