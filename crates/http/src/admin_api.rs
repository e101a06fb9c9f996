//! The admin REST API under `/api/v1`: users, tokens, applications, realms, user sources,
//! settings, the declarative configuration and the audit log. Authenticated by the bearer
//! token from `/auth`; documented by `/api/v1/openapi.json`.

use crate::validate::bearer;
use crate::{HttpState, St};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use tessera_core::admin::{Actor, AdminError, Declaration, EnrollInput, NewUserInput};
use tessera_core::model::{
    AdminSession, Application, AuditQuery, Realm, TokenState, UserPatch, UserSourceDef,
};
use zeroize::Zeroizing;

/// Every route of the admin API: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/users"),
    ("post", "/users"),
    ("get", "/users/{username}"),
    ("patch", "/users/{username}"),
    ("delete", "/users/{username}"),
    ("get", "/tokens"),
    ("post", "/tokens"),
    ("get", "/tokens/{serial}"),
    ("patch", "/tokens/{serial}"),
    ("delete", "/tokens/{serial}"),
    ("post", "/tokens/{serial}/reset"),
    ("post", "/tokens/{serial}/resync"),
    ("get", "/applications"),
    ("post", "/applications"),
    ("get", "/applications/{name}"),
    ("put", "/applications/{name}"),
    ("delete", "/applications/{name}"),
    ("get", "/realms"),
    ("post", "/realms"),
    ("get", "/realms/{name}"),
    ("put", "/realms/{name}"),
    ("delete", "/realms/{name}"),
    ("get", "/user-sources"),
    ("post", "/user-sources"),
    ("get", "/user-sources/{name}"),
    ("put", "/user-sources/{name}"),
    ("delete", "/user-sources/{name}"),
    ("get", "/settings"),
    ("patch", "/settings"),
    ("get", "/config"),
    ("post", "/config"),
    ("get", "/audit"),
    ("post", "/logout"),
];

pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/openapi.json", get(get_openapi))
        .route("/users", get(get_users).post(post_users))
        .route(
            "/users/{username}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/tokens", get(get_tokens).post(post_tokens))
        .route(
            "/tokens/{serial}",
            get(get_token).patch(patch_token).delete(delete_token),
        )
        .route("/tokens/{serial}/reset", post(post_token_reset))
        .route("/tokens/{serial}/resync", post(post_token_resync))
        .route(
            "/applications",
            get(get_applications).post(post_applications),
        )
        .route(
            "/applications/{name}",
            get(get_application)
                .put(put_application)
                .delete(delete_application),
        )
        .route("/realms", get(get_realms).post(post_realms))
        .route(
            "/realms/{name}",
            get(get_realm).put(put_realm).delete(delete_realm),
        )
        .route(
            "/user-sources",
            get(get_user_sources).post(post_user_sources),
        )
        .route(
            "/user-sources/{name}",
            get(get_user_source)
                .put(put_user_source)
                .delete(delete_user_source),
        )
        .route("/settings", get(get_settings).patch(patch_settings))
        .route("/config", get(get_config).post(post_config))
        .route("/audit", get(get_audit))
        .route("/logout", post(post_logout))
}

/// An error of the admin API: `{"error": {"code", "message", "problems"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    fn from_admin(state: &HttpState, e: AdminError) -> Self {
        match e {
            AdminError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            AdminError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            AdminError::Invalid(problems) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid",
                message: format!(
                    "{} problem(s) in the request; nothing was changed",
                    problems.len()
                ),
                problems,
            },
            AdminError::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            AdminError::Engine(e) => {
                let id = state.error_id();
                tracing::error!(error_id = %id, error = %e, "admin request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error (error id {id}; see the server log)"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message, "problems": self.problems}})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// An authenticated administrator. Handlers get one only after the token was checked.
pub(crate) struct Authed {
    session: AdminSession,
    ip: String,
}

impl Authed {
    fn actor(&self) -> Actor {
        Actor {
            name: format!("admin:{}", self.session.admin),
            door: "api".into(),
            client_ip: Some(self.ip.clone()),
        }
    }

    fn read(&self) -> ApiResult<()> {
        if self.session.role.can_read() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this account may not read the configuration",
            ))
        }
    }

    fn write(&self) -> ApiResult<Actor> {
        if self.session.role.can_write() {
            Ok(self.actor())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this account may not change anything",
            ))
        }
    }
}

impl FromRequestParts<HttpState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in at POST /auth and send the token in the Authorization header",
            )
        };
        let token = bearer(&parts.headers).ok_or_else(unauthorized)?.to_string();
        let session = state
            .admin
            .session(&token)
            .await
            .map_err(|e| ApiError::from_admin(state, e))?
            .ok_or_else(unauthorized)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let ip = state.client_ip(peer, &parts.headers, None).to_string();
        Ok(Authed { session, ip })
    }
}

/// A JSON body whose errors are reported as this API's errors.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

fn json_map(bytes: &Bytes) -> ApiResult<Map<String, Value>> {
    match body::<Value>(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "request body: expected a JSON object",
        )),
    }
}

async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---------------------------------------------------------------- users

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    source: Option<String>,
    search: Option<String>,
    user: Option<String>,
    realm: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceQuery {
    source: Option<String>,
}

async fn get_users(state: St, auth: Authed, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let users = state
        .admin
        .list_users(
            q.source.as_deref(),
            q.search.as_deref(),
            q.limit.unwrap_or(100),
            q.offset.unwrap_or(0),
        )
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "users": users })))
}

async fn post_users(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let input: NewUserInput = body(&bytes)?;
    let user = state
        .admin
        .create_user(&actor, input)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

async fn get_user(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<SourceQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let user = state
        .admin
        .get_user(q.source.as_deref(), &username)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(user)))
}

async fn patch_user(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<SourceQuery>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let mut map = json_map(&bytes)?;
    let password = match map.remove("password") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(p)) => Some(Some(Zeroizing::new(p))),
        Some(_) => return Err(ApiError::bad_request("password: must be a string or null")),
    };
    let patch: UserPatch = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    let user = state
        .admin
        .update_user(&actor, q.source.as_deref(), &username, patch, password)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(user)))
}

async fn delete_user(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<SourceQuery>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let tokens = state
        .admin
        .delete_user(&actor, q.source.as_deref(), &username)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(
        json!({ "deleted": username, "tokens_deleted": tokens }),
    ))
}

// ---------------------------------------------------------------- tokens

async fn get_tokens(state: St, auth: Authed, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let tokens = state
        .admin
        .list_tokens(
            q.user.as_deref(),
            q.realm.as_deref(),
            q.limit.unwrap_or(100),
            q.offset.unwrap_or(0),
        )
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "tokens": tokens })))
}

async fn post_tokens(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let input: EnrollInput = body(&bytes)?;
    let enrolled = state
        .admin
        .enroll(&actor, input)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    let png = tessera_otp::qr_png(&enrolled.uri, 4)
        .map(|p| format!("data:image/png;base64,{}", data_encoding::BASE64.encode(&p)))
        .unwrap_or_default();
    let svg = tessera_otp::qr_svg(&enrolled.uri).unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": enrolled.token,
            "secret": enrolled.secret,
            "uri": enrolled.uri,
            "image": png,
            "svg": svg,
        })),
    )
        .into_response())
}

async fn get_token(state: St, auth: Authed, Path(serial): Path<String>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let t = state
        .admin
        .get_token(&serial)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(t)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenPatchBody {
    description: Option<String>,
    max_fail: Option<u32>,
    count_window: Option<u32>,
    sync_window: Option<u32>,
    state: Option<TokenState>,
}

async fn patch_token(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let mut map = json_map(&bytes)?;
    let pin = match map.remove("pin") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(p)) => Some(Some(Zeroizing::new(p))),
        Some(_) => return Err(ApiError::bad_request("pin: must be a string or null")),
    };
    let patch: TokenPatchBody = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    let admin = &state.admin;
    let err = |e| ApiError::from_admin(&state, e);
    // Check everything before changing anything.
    let current = admin.get_token(&serial).await.map_err(err)?;
    if let Some(Some(p)) = &pin {
        let n = p.chars().count();
        if !(1..=256).contains(&n) || p.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "pin: must be 1 to 256 characters without control characters",
            ));
        }
    }
    if current.state == TokenState::Revoked && patch.state.is_some_and(|s| s != TokenState::Revoked)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {serial} is revoked; revocation cannot be undone (enroll a new token)"),
        ));
    }
    let mut info = current;
    if patch.description.is_some()
        || patch.max_fail.is_some()
        || patch.count_window.is_some()
        || patch.sync_window.is_some()
    {
        info = admin
            .update_token(
                &actor,
                &serial,
                patch.description,
                patch.max_fail,
                patch.count_window,
                patch.sync_window,
            )
            .await
            .map_err(err)?;
    }
    if let Some(pin) = pin {
        info = admin
            .set_token_pin(&actor, &serial, pin)
            .await
            .map_err(err)?;
    }
    if let Some(s) = patch.state {
        info = admin
            .set_token_state(&actor, &serial, s)
            .await
            .map_err(err)?;
    }
    Ok(Json(json!(info)))
}

async fn delete_token(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state
        .admin
        .delete_token(&actor, &serial)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "deleted": serial })))
}

async fn post_token_reset(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let t = state
        .admin
        .reset_token(&actor, &serial)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(t)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResyncBody {
    otp1: String,
    otp2: String,
}

async fn post_token_resync(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let b: ResyncBody = body(&bytes)?;
    let t = state
        .admin
        .resync_token(&actor, &serial, &b.otp1, &b.otp2)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(t)))
}

// ---------------------------------------------------------------- configuration objects

fn name_matches(path: &str, body: &str) -> ApiResult<()> {
    if path.eq_ignore_ascii_case(body) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "name: the body names '{body}' but the path names '{path}'"
        )))
    }
}

async fn get_applications(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    Ok(Json(
        json!({ "applications": state.admin.list_applications() }),
    ))
}

async fn create_application(
    state: &HttpState,
    auth: &Authed,
    app: Application,
    must_be_new: bool,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    if must_be_new && state.admin.get_application(app.name.as_str()).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("application '{}' already exists", app.name),
        ));
    }
    let saved = state
        .admin
        .put_application(&actor, app)
        .await
        .map_err(|e| ApiError::from_admin(state, e))?;
    Ok(Json(json!(saved)))
}

async fn post_applications(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let app: Application = body(&bytes)?;
    let out = create_application(&state, &auth, app, true).await?;
    Ok((StatusCode::CREATED, out).into_response())
}

async fn get_application(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let a = state
        .admin
        .get_application(&name)
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(a)))
}

async fn put_application(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let app: Application = body(&bytes)?;
    name_matches(&name, app.name.as_str())?;
    create_application(&state, &auth, app, false).await
}

async fn delete_application(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state
        .admin
        .delete_application(&actor, &name)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "deleted": name })))
}

async fn get_realms(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    Ok(Json(json!({ "realms": state.admin.list_realms() })))
}

async fn save_realm(
    state: &HttpState,
    auth: &Authed,
    realm: Realm,
    must_be_new: bool,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    if must_be_new && state.admin.get_realm(realm.name.as_str()).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("realm '{}' already exists", realm.name),
        ));
    }
    let saved = state
        .admin
        .put_realm(&actor, realm)
        .await
        .map_err(|e| ApiError::from_admin(state, e))?;
    Ok(Json(json!(saved)))
}

async fn post_realms(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let realm: Realm = body(&bytes)?;
    let out = save_realm(&state, &auth, realm, true).await?;
    Ok((StatusCode::CREATED, out).into_response())
}

async fn get_realm(state: St, auth: Authed, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let r = state
        .admin
        .get_realm(&name)
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(r)))
}

async fn put_realm(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let realm: Realm = body(&bytes)?;
    name_matches(&name, realm.name.as_str())?;
    save_realm(&state, &auth, realm, false).await
}

async fn delete_realm(state: St, auth: Authed, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state
        .admin
        .delete_realm(&actor, &name)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "deleted": name })))
}

async fn get_user_sources(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    Ok(Json(
        json!({ "user_sources": state.admin.list_user_sources() }),
    ))
}

async fn save_user_source(
    state: &HttpState,
    auth: &Authed,
    source: UserSourceDef,
    must_be_new: bool,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    if must_be_new && state.admin.get_user_source(source.name.as_str()).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("user source '{}' already exists", source.name),
        ));
    }
    let saved = state
        .admin
        .put_user_source(&actor, source)
        .await
        .map_err(|e| ApiError::from_admin(state, e))?;
    Ok(Json(json!(saved)))
}

async fn post_user_sources(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let source: UserSourceDef = body(&bytes)?;
    let out = save_user_source(&state, &auth, source, true).await?;
    Ok((StatusCode::CREATED, out).into_response())
}

async fn get_user_source(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let s = state
        .admin
        .get_user_source(&name)
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(s)))
}

async fn put_user_source(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let source: UserSourceDef = body(&bytes)?;
    name_matches(&name, source.name.as_str())?;
    save_user_source(&state, &auth, source, false).await
}

async fn delete_user_source(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state
        .admin
        .delete_user_source(&actor, &name)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "deleted": name })))
}

// ---------------------------------------------------------------- settings, config, audit

async fn get_settings(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    Ok(Json(json!(state.admin.settings())))
}

async fn patch_settings(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let changes = json_map(&bytes)?;
    let s = state
        .admin
        .update_settings(&actor, changes)
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(s)))
}

async fn get_config(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    let d = state
        .admin
        .export()
        .await
        .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!(d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    prune: bool,
}

async fn post_config(
    state: St,
    auth: Authed,
    Query(q): Query<ApplyQuery>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let decl: Declaration = body(&bytes)?;
    let changes = if q.dry_run {
        state.admin.plan(&decl, q.prune).await
    } else {
        state.admin.apply(&actor, &decl, q.prune).await
    }
    .map_err(|e| ApiError::from_admin(&state, e))?;
    Ok(Json(json!({ "dry_run": q.dry_run, "changes": changes })))
}

async fn get_audit(state: St, auth: Authed, Query(q): Query<AuditQuery>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let records = state
        .engine
        .store()
        .query_audit(&q)
        .await
        .map_err(|e| ApiError::from_admin(&state, AdminError::from(e)))?;
    Ok(Json(json!({ "records": records })))
}

async fn post_logout(state: St, _auth: Authed, headers: HeaderMap) -> ApiResult<Json<Value>> {
    if let Some(token) = bearer(&headers) {
        state
            .admin
            .logout(token)
            .await
            .map_err(|e| ApiError::from_admin(&state, e))?;
    }
    Ok(Json(json!({ "signed_out": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document describes exactly the routes the router serves.
    #[test]
    fn openapi_lists_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, ops) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if ops.get(method).is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        for (method, path) in ROUTES {
            let full = format!("/api/v1{path}");
            assert!(
                documented.contains(&(method.to_string(), full.clone())),
                "{method} {full} is served but not documented"
            );
        }
        for (method, path) in &documented {
            if path.starts_with("/api/v1") && path != "/api/v1/openapi.json" {
                let short = path.trim_start_matches("/api/v1");
                assert!(
                    ROUTES.contains(&(method.as_str(), short)),
                    "{method} {path} is documented but not in ROUTES"
                );
            }
        }
    }
}
