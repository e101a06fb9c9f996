//! OAuth2 for API clients: `/oauth/token` (client credentials), `/oauth/introspect` (RFC 7662),
//! `/oauth/revoke` (RFC 7009), `/oauth/jwks` and the authorization-server metadata (RFC 8414).
//! Access tokens are JWTs (RFC 9068) signed with ES256. The signature is made and checked with
//! ring (already Tessera's TLS crypto) rather than a JWT crate: one algorithm, a few lines, and
//! no RSA code in the build.

use crate::{HttpState, St};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::BASE64URL_NOPAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tessera_core::model::{ApiClient, ApiClientKind, AuditRecord};

/// Where the signing key is kept (sealed) in the store's meta table.
const KEY_META: &str = "oauth_signing_key";
const KEY_CONTEXT: &str = "oauth:signing_key";

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/mfa", post(mfa))
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

/// Per-node token request counts: client id → (minute, count).
pub(crate) type RateCounts = Mutex<HashMap<String, (i64, u32)>>;

async fn signer(state: &HttpState) -> Result<Arc<Signer>, String> {
    state
        .oauth_signer
        .get_or_try_init(|| async {
            let store = state.engine.store();
            let rng = SystemRandom::new();
            let stored = match store.meta(KEY_META).await.map_err(|e| e.to_string())? {
                Some(v) => v,
                None => {
                    let pkcs8 =
                        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                            .map_err(|_| "cannot make a signing key".to_string())?;
                    let sealed = store.seal_secret(pkcs8.as_ref(), KEY_CONTEXT);
                    // Nodes racing here all end up with the key stored first.
                    store
                        .init_meta(KEY_META, &data_encoding::BASE64.encode(&sealed))
                        .await
                        .map_err(|e| e.to_string())?
                }
            };
            let sealed = data_encoding::BASE64
                .decode(stored.as_bytes())
                .map_err(|e| format!("signing key: {e}"))?;
            let pkcs8 = store
                .open_secret(&sealed, KEY_CONTEXT)
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
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(sig.as_ref())))
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

/// An RFC 6749 §5.2 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    no_store(&mut res);
    res
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn invalid_client(description: &str) -> Response {
    let mut res = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tessera\""),
    );
    res
}

fn form(body: &Bytes) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        // A parameter given twice is an error (RFC 6749 §3.2); remember it as such.
        if out.insert(k.to_string(), v.to_string()).is_some() {
            out.insert(format!("{k}\u{0}twice"), String::new());
        }
    }
    out
}

/// The calling client: HTTP Basic (RFC 6749 §2.3.1) or `client_id`/`client_secret` in the
/// body, not both. `Err` is the answer to send; failures are audited.
async fn authenticate_client(
    state: &HttpState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    peer: std::net::IpAddr,
) -> Result<ApiClient, Box<Response>> {
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
            return Err(Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate the client one way only: HTTP Basic or the request body",
            )));
        }
        (Some(Some((id, secret))), (body_id, None)) => {
            if body_id.is_some_and(|b| *b != id) {
                return Err(Box::new(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id differs from the one authenticated",
                )));
            }
            (id, secret)
        }
        (Some(None), _) => return Err(Box::new(invalid_client("malformed Basic credentials"))),
        (None, (Some(id), Some(secret))) => (id.clone(), secret.clone()),
        (None, _) => return Err(Box::new(invalid_client("client authentication required"))),
    };
    // One answer for every failure, so that a right secret is not confirmed from an address
    // the client may not call from.
    const REFUSED: &str = "unknown client, wrong secret or address not allowed";
    let snap = state.engine.snapshot();
    let refuse = |why: &'static str, name: String| async move {
        audit(state, &name, "oauth_client_auth", "error", why, peer).await;
        Err(Box::new(invalid_client(REFUSED)))
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

/// The issuer of tokens: the `public_url` setting (required: the metadata and the tokens must
/// not depend on what a request says its host is).
fn issuer(state: &HttpState) -> Result<String, Box<Response>> {
    let url = state.engine.snapshot().settings.public_url.clone();
    if url.is_empty() {
        tracing::warn!("OAuth needs the public_url setting");
        return Err(Box::new(oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "OAuth is not set up: the public_url setting is empty",
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
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
    let record = AuditRecord {
        id: 0,
        at_ms: engine.clock().now_millis(),
        actor: format!("api:{client}"),
        action: action.into(),
        door: "api".into(),
        user: None,
        realm: None,
        serial: None,
        application: None,
        transaction_id: None,
        client_ip: Some(ip.to_string()),
        user_agent: None,
        result: result.into(),
        reason: reason.into(),
    };
    if let Err(e) = engine.store().append_audit(&record).await {
        tracing::warn!(error = %e, "OAuth audit record not written");
    }
}

async fn token(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    if params.keys().any(|k| k.ends_with("\u{0}twice")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    }
    let ip = state.client_ip(peer, &headers, None);
    let client = match authenticate_client(&state, &headers, &params, ip).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let grant = params.get("grant_type").map(String::as_str).unwrap_or("");
    let now = state.engine.clock().now();
    if client.rate_limit_per_minute > 0 {
        let minute = now / 60;
        let over = match state.oauth_rates.lock() {
            Ok(mut counts) => {
                let entry = counts
                    .entry(client.client_id.clone())
                    .or_insert((minute, 0));
                if entry.0 != minute {
                    *entry = (minute, 0);
                }
                entry.1 += 1;
                entry.1 > client.rate_limit_per_minute
            }
            Err(_) => false,
        };
        if over {
            audit(
                &state,
                &client.name,
                "oauth_token",
                "error",
                "rate limit",
                ip,
            )
            .await;
            let mut res = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many token requests from this client; try again in a minute",
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return res;
        }
    }
    match grant {
        "client_credentials" => {}
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
        "password" => return password_grant(&state, &client, &params, ip).await,
        "refresh_token" => return refresh_grant(&state, &client, &params).await,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or password",
            );
        }
    }
    if client.kind != ApiClientKind::Agent {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "only agent clients use client_credentials",
        );
    }
    let scopes: Vec<String> = match params.get("scope") {
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = asked.iter().find(|a| !client.scopes.contains(a)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("scope '{bad}' is not granted to this client"),
                );
            }
            asked
        }
        None => client.scopes.clone(),
    };
    let signer = match signer(&state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "OAuth signing key unavailable");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "no signing key",
            );
        }
    };
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(res) => return *res,
    };
    let lifetime = i64::from(client.token_lifetime_seconds);
    let jti = tessera_core::rng::random_hex(state.engine.ports().rng.as_ref(), 16);
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
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
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
    res
}

/// Lifetime of an MFA_PENDING token (seed 003's CONF_MFA_TOKEN_EXPIRY_IN_MINUTES default).
const MFA_PENDING_SECONDS: i64 = 15 * 60;
/// Lifetime of a refresh token.
const REFRESH_SECONDS: i64 = 24 * 3600;

/// The refresh_token grant (user clients): a new USER token (and refresh token) for a user who
/// is still active, for the same or fewer scopes; the refresh token is spent.
async fn refresh_grant(
    state: &HttpState,
    client: &ApiClient,
    params: &HashMap<String, String>,
) -> Response {
    if client.kind != ApiClientKind::User {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "only user clients get refresh tokens",
        );
    }
    let Some(refresh) = params.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        );
    };
    let now = state.engine.clock().now();
    let kept = match state
        .engine
        .store()
        .use_refresh_token(&ApiClient::hash_secret(refresh), &client.client_id, now)
        .await
    {
        Ok(Some(k)) => k,
        Ok(None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "unknown, expired or used refresh token",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "refresh token not read");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
    };
    if let Some(asked) = params.get("scope")
        && asked
            .split(' ')
            .filter(|s| !s.is_empty())
            .any(|s| !kept.scope.split(' ').any(|k| k == s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "more scope than granted",
        );
    }
    // The user must still be there and active.
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(kept.realm.clone());
    let user = match state.engine.find_user(&snap, &realm, &kept.username).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the user can no longer sign in",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "refresh: user not looked up");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
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
        message: "refreshed".into(),
    }));
    user_token(state, client, &outcome).await
}

/// A signed token response for a user: `USER` after every factor, `MFA_PENDING` with the
/// transaction to finish when more are asked for.
async fn user_token(
    state: &HttpState,
    client: &ApiClient,
    outcome: &tessera_core::engine::Outcome,
) -> Response {
    use tessera_core::engine::Outcome;
    let signer = match signer(state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "OAuth signing key unavailable");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "no signing key",
            );
        }
    };
    let now = state.engine.clock().now();
    let jti = tessera_core::rng::random_hex(state.engine.ports().rng.as_ref(), 16);
    let (user, realm, role, lifetime, tx, prompts) = match outcome {
        Outcome::Accept(a) => (
            a.user.username.clone(),
            a.realm.0.clone(),
            "USER",
            i64::from(client.token_lifetime_seconds),
            None,
            Vec::new(),
        ),
        Outcome::Challenge(c) => (
            c.user.username.clone(),
            c.realm.0.clone(),
            "MFA_PENDING",
            MFA_PENDING_SECONDS.min(i64::from(client.token_lifetime_seconds)),
            Some(c.transaction_id.as_str().to_string()),
            c.prompts
                .iter()
                .map(|p| json!({"type": p.kind, "message": p.message, "client_mode": p.client_mode.as_str()}))
                .collect(),
        ),
        Outcome::Reject(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "wrong user name, password or code",
            );
        }
    };
    let (scope, aud) = if role == "USER" {
        (client.scopes.join(" "), "tessera")
    } else {
        // Not an access token to anything but /oauth/mfa: another audience, and
        // introspection reports it inactive.
        ("mfa".to_string(), "tessera-mfa")
    };
    let iss = match issuer(state) {
        Ok(i) => i,
        Err(res) => return *res,
    };
    let mut claims = json!({
        "iss": iss,
        "sub": user,
        "realm": realm,
        "aud": aud,
        "client_id": client.client_id,
        "scope": scope,
        "role": role,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti,
    });
    if let (Some(tx), Some(obj)) = (&tx, claims.as_object_mut()) {
        obj.insert("mfa_tx".into(), Value::String(tx.clone()));
    }
    let access = match signer.sign(&claims) {
        Ok(t) => t,
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
    };
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
        "role": role,
    });
    if tx.is_some()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("mfa_required".into(), Value::Bool(true));
        obj.insert("mfa".into(), Value::Array(prompts));
    }
    // A user's token comes with a refresh token (single use; renewed with each refresh).
    if role == "USER" {
        let refresh = tessera_core::rng::random_token(state.engine.ports().rng.as_ref());
        let kept = tessera_core::store::RefreshToken {
            hash: ApiClient::hash_secret(&refresh),
            client_id: client.client_id.clone(),
            username: user.clone(),
            realm: realm.clone(),
            scope: scope.clone(),
            expires_at: now + REFRESH_SECONDS,
        };
        if let Err(e) = state.engine.store().put_refresh_token(&kept).await {
            tracing::error!(error = %e, "refresh token not stored");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
        if let Some(obj) = body.as_object_mut() {
            obj.insert("refresh_token".into(), Value::String(refresh));
        }
    }
    let mut res = axum::Json(body).into_response();
    no_store(&mut res);
    res
}

fn request_ctx(client: &ApiClient, ip: std::net::IpAddr) -> tessera_core::engine::RequestCtx {
    tessera_core::engine::RequestCtx {
        client_ip: Some(ip),
        application: client.application.clone(),
        actor: format!("api:{}", client.name),
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
) -> Response {
    if client.kind != ApiClientKind::User {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "only user clients use the password grant",
        );
    }
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username and password are required",
        );
    };
    if username.is_empty() || username.len() > 256 || password.len() > 1024 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username empty, or username or password too long",
        );
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
        Ok(outcome) => user_token(state, client, &outcome).await,
        Err(tessera_core::engine::EngineError::Channel(c)) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{c} ({})", c.code()),
        ),
        Err(e) => {
            tracing::error!(error = %e, "password grant failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again",
            )
        }
    }
}

fn invalid_token(why: &str) -> Response {
    let mut res = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", why);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    res
}

/// `/oauth/mfa`: the next factor of a login whose MFA_PENDING token is the bearer; `otp` is
/// the answer. A USER token when every factor is done (the MFA_PENDING token is revoked).
async fn mfa(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let ip = state.client_ip(peer, &headers, None);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = bearer else {
        return invalid_token("an MFA_PENDING access token is required");
    };
    let Some(claims) = active_claims(&state, token).await else {
        return invalid_token("the token is not valid (expired, revoked or not ours)");
    };
    let (Some("MFA_PENDING"), Some(tx), Some(user), Some(client_id)) = (
        claims["role"].as_str(),
        claims["mfa_tx"].as_str(),
        claims["sub"].as_str(),
        claims["client_id"].as_str(),
    ) else {
        return invalid_token("not an MFA_PENDING token");
    };
    let snap = state.engine.snapshot();
    let Some(client) = snap.api_client_by_id(client_id).cloned() else {
        return invalid_token("the client of this token no longer exists");
    };
    if !client.allows_ip(ip) {
        return invalid_token("this client may not call from this address");
    }
    let Some(tx_id) = tessera_core::ids::TransactionId::parse(tx) else {
        return invalid_token("not an MFA_PENDING token");
    };
    let req = tessera_core::engine::AuthRequest {
        user: Some(user.to_string()),
        realm: claims["realm"].as_str().map(str::to_string),
        pass: zeroize::Zeroizing::new(params.get("otp").cloned().unwrap_or_default()),
        transaction_id: Some(tx_id),
        ..Default::default()
    };
    let outcome = match state
        .engine
        .authenticate(&req, &request_ctx(&client, ip))
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "MFA step failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again",
            );
        }
    };
    if matches!(outcome, tessera_core::engine::Outcome::Accept(_))
        && let (Some(jti), Some(exp)) = (claims["jti"].as_str(), claims["exp"].as_i64())
        && let Err(e) = state.engine.store().revoke_token(jti, exp).await
    {
        tracing::error!(error = %e, "MFA_PENDING token not revoked");
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        );
    }
    user_token(&state, &client, &outcome).await
}

/// The claims of an active token: signed by us, unexpired, not revoked.
async fn active_claims(state: &HttpState, token: &str) -> Option<Value> {
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
    match state.engine.store().token_revoked(jti).await {
        Ok(false) => Some(claims),
        _ => None,
    }
}

async fn introspect(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    if params.keys().any(|k| k.ends_with("\u{0}twice")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    }
    let ip = state.client_ip(peer, &headers, None);
    let client = match authenticate_client(&state, &headers, &params, ip).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    if !client.scopes.iter().any(|s| s == "introspect") {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "this client may not introspect tokens (scope introspect)",
        );
    }
    let Some(token) = params.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    let answer = match active_claims(&state, token)
        .await
        .filter(|c| c["role"] != "MFA_PENDING")
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
    res
}

async fn revoke(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    if params.keys().any(|k| k.ends_with("\u{0}twice")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    }
    let ip = state.client_ip(peer, &headers, None);
    let client = match authenticate_client(&state, &headers, &params, ip).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let Some(token) = params.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    if signer(&state).await.is_err() {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        );
    }
    // RFC 7009: the answer is 200 whether or not the token was valid; a client revokes only
    // its own tokens.
    if let Some(claims) = active_claims(&state, token).await
        && claims["client_id"] == client.client_id.as_str()
        && let (Some(jti), Some(exp)) = (claims["jti"].as_str(), claims["exp"].as_i64())
    {
        if let Err(e) = state.engine.store().revoke_token(jti, exp).await {
            tracing::error!(error = %e, "token not revoked");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
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
    res
}

/// The OpenAPI document of these endpoints.
pub(crate) const OPENAPI: &str = include_str!("oauth_openapi.json");

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
    match signer(&state).await {
        Ok(s) => axum::Json(json!({"keys": [s.jwk()]})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "OAuth signing key unavailable");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn metadata(state: St) -> Response {
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(res) => return *res,
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
        let source = include_str!("oauth.rs");
        let routes = source.matches(".route(\"").count();
        assert_eq!(
            routes,
            doc["paths"].as_object().map_or(0, |p| p.len()),
            "every route is documented"
        );
    }
}
