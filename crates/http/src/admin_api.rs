//! The admin REST API under `/api/v1`: users, tokens, applications, realms, user sources,
//! settings, the declarative configuration and the audit log. Authenticated by the bearer
//! token from `/auth`; documented by `/api/v1/openapi.json`.

use crate::validate::bearer;
use crate::{HttpState, St};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use tessera_core::admin::{
    Actor, AdminError, ConfigObject, Declaration, EnrollInput, NewUserInput,
};
use tessera_core::engine::{Door, RequestCtx};
use tessera_core::model::{
    AdminSession, Application, AuditQuery, Net, RadiusClient, Realm, TokenState, UserPatch,
    UserSourceDef,
};
use tessera_core::source::PasswordChangeError;
use zeroize::Zeroizing;

/// Every route of the admin API: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/users"),
    ("post", "/users"),
    ("get", "/users/{username}"),
    ("patch", "/users/{username}"),
    ("delete", "/users/{username}"),
    ("post", "/users/{username}/password"),
    ("get", "/users/{username}/sessions"),
    ("delete", "/users/{username}/sessions"),
    ("get", "/users/{username}/lockout"),
    ("post", "/users/{username}/unlock"),
    ("get", "/admins/{name}/lockout"),
    ("post", "/admins/{name}/unlock"),
    ("get", "/tokens"),
    ("post", "/tokens"),
    ("get", "/tokens/{serial}"),
    ("patch", "/tokens/{serial}"),
    ("delete", "/tokens/{serial}"),
    ("post", "/tokens/{serial}/reset"),
    ("post", "/tokens/{serial}/reset-failcount"),
    ("post", "/tokens/{serial}/resync"),
    ("post", "/tokens/{serial}/assign"),
    ("post", "/tokens/import"),
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
    ("get", "/radius-clients"),
    ("post", "/radius-clients"),
    ("get", "/radius-clients/{name}"),
    ("put", "/radius-clients/{name}"),
    ("delete", "/radius-clients/{name}"),
    ("get", "/api-clients"),
    ("post", "/api-clients"),
    ("get", "/api-clients/{name}"),
    ("patch", "/api-clients/{name}"),
    ("delete", "/api-clients/{name}"),
    ("get", "/saml-sps"),
    ("post", "/saml-sps"),
    ("post", "/saml-sps/import"),
    ("get", "/saml-sps/{name}"),
    ("put", "/saml-sps/{name}"),
    ("delete", "/saml-sps/{name}"),
    ("get", "/settings"),
    ("patch", "/settings"),
    ("get", "/config"),
    ("post", "/config"),
    ("get", "/audit"),
    ("post", "/logout"),
];

pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<HttpState> {
    let router = object_routes::<Application>(Router::new(), "/applications");
    let router = object_routes::<Realm>(router, "/realms");
    let router = object_routes::<UserSourceDef>(router, "/user-sources");
    let router = object_routes::<RadiusClient>(router, "/radius-clients");
    let router = object_routes::<tessera_core::model::SamlServiceProvider>(router, "/saml-sps");
    router
        .route("/api-clients", get(get_api_clients).post(post_api_clients))
        .route(
            "/api-clients/{name}",
            get(get_api_client)
                .patch(patch_api_client)
                .delete(delete_object::<tessera_core::model::ApiClient>),
        )
        .route("/saml-sps/import", axum::routing::post(import_saml_sp))
        .route("/openapi.json", get(get_openapi))
        .route("/users", get(get_users).post(post_users))
        .route(
            "/users/{username}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/users/{username}/password", post(post_user_password))
        .route(
            "/users/{username}/sessions",
            get(get_user_sessions).delete(delete_user_sessions),
        )
        .route("/users/{username}/lockout", get(get_user_lockout))
        .route("/users/{username}/unlock", post(post_user_unlock))
        .route("/admins/{name}/lockout", get(get_admin_lockout))
        .route("/admins/{name}/unlock", post(post_admin_unlock))
        .route("/tokens", get(get_tokens).post(post_tokens))
        .route(
            "/tokens/{serial}",
            get(get_token).patch(patch_token).delete(delete_token),
        )
        .route("/tokens/{serial}/reset", post(post_token_reset))
        .route("/tokens/{serial}/reset-failcount", post(post_token_reset))
        .route("/tokens/{serial}/resync", post(post_token_resync))
        .route("/tokens/{serial}/assign", post(post_token_assign))
        .route(
            "/tokens/import",
            post(post_tokens_import).layer(DefaultBodyLimit::max(crate::MAX_IMPORT_BODY)),
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

/// Maps the admin service's errors to this API's answers.
trait ApiResultExt<T> {
    fn api(self, state: &HttpState) -> ApiResult<T>;
}

impl<T> ApiResultExt<T> for Result<T, AdminError> {
    fn api(self, state: &HttpState) -> ApiResult<T> {
        self.map_err(|e| ApiError::from_admin(state, e))
    }
}

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
            .api(state)?
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
        .api(&state)?;
    Ok(Json(json!({ "users": users })))
}

async fn post_users(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let input: NewUserInput = body(&bytes)?;
    let user = state.admin.create_user(&actor, input).await.api(&state)?;
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
        .api(&state)?;
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
        .api(&state)?;
    Ok(Json(json!(user)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RealmQuery {
    realm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: Zeroizing<String>,
}

/// Sets a user's password in the user's source (an administrator's reset).
async fn post_user_password(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<RealmQuery>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let input: PasswordBody = body(&bytes)?;
    let mut ctx = RequestCtx::new(Door::Api);
    ctx.actor = actor.name.clone();
    ctx.client_ip = actor.client_ip.as_deref().and_then(|ip| ip.parse().ok());
    state
        .admin
        .engine()
        .change_password(&username, q.realm.as_deref(), None, &input.password, &ctx)
        .await
        .map_err(|e| match e {
            PasswordChangeError::Source(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            other => ApiError::bad_request(other.to_string()),
        })?;
    Ok(Json(json!({ "password_set": username })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    realm: Option<String>,
    id: Option<String>,
}

async fn get_user_sessions(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<RealmQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let sessions = state
        .admin
        .sso_sessions(&username, q.realm.as_deref())
        .await
        .api(&state)?;
    Ok(Json(json!({ "sessions": sessions })))
}

async fn delete_user_sessions(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<SessionQuery>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let gone = state
        .admin
        .end_sso_sessions(&actor, &username, q.realm.as_deref(), q.id.as_deref())
        .await
        .api(&state)?;
    // Their OpenID Connect clients are told by the server's back-channel worker.
    Ok(Json(json!({ "ended": gone.len() })))
}

async fn get_user_lockout(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<RealmQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let report = state
        .admin
        .user_lockout(&username, q.realm.as_deref())
        .await
        .api(&state)?;
    Ok(Json(json!(report)))
}

async fn post_user_unlock(
    state: St,
    auth: Authed,
    Path(username): Path<String>,
    Query(q): Query<RealmQuery>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let report = state
        .admin
        .unlock_user(&actor, &username, q.realm.as_deref())
        .await
        .api(&state)?;
    Ok(Json(json!(report)))
}

async fn get_admin_lockout(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let report = state.admin.admin_lockout(&name).await.api(&state)?;
    Ok(Json(json!(report)))
}

async fn post_admin_unlock(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let report = state.admin.unlock_admin(&actor, &name).await.api(&state)?;
    Ok(Json(json!(report)))
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
        .api(&state)?;
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
        .api(&state)?;
    Ok(Json(json!({ "tokens": tokens })))
}

async fn post_tokens(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let input: EnrollInput = body(&bytes)?;
    let enrolled = state.admin.enroll(&actor, input).await.api(&state)?;
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
    let t = state.admin.get_token(&serial).await.api(&state)?;
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
    // Check everything before changing anything.
    let current = admin.get_token(&serial).await.api(&state)?;
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
            .api(&state)?;
    }
    if let Some(pin) = pin {
        info = admin
            .set_token_pin(&actor, &serial, pin)
            .await
            .api(&state)?;
    }
    if let Some(s) = patch.state {
        info = admin
            .set_token_state(&actor, &serial, s)
            .await
            .api(&state)?;
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
        .api(&state)?;
    Ok(Json(json!({ "deleted": serial })))
}

async fn post_token_reset(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let t = state.admin.reset_token(&actor, &serial).await.api(&state)?;
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
        .api(&state)?;
    Ok(Json(json!(t)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    /// The file's text.
    data: String,
    /// `pskc` or `csv`; default: by the content.
    #[serde(default)]
    format: Option<tessera_core::admin::TokenFileFormat>,
    /// PSKC: the pre-shared AES-128 key in hex.
    #[serde(default)]
    psk_hex: Option<zeroize::Zeroizing<String>>,
    /// PSKC: the password the key is derived from.
    #[serde(default)]
    password: Option<zeroize::Zeroizing<String>>,
}

async fn post_tokens_import(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Json<Value>> {
    use tessera_otp::import::PskcKey;
    let actor = auth.write()?;
    let b: ImportBody = body(&bytes)?;
    let key = match (b.psk_hex, b.password) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give psk_hex or password, not both".to_string(),
            ));
        }
        (Some(hex), None) => {
            let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
            match data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()) {
                Ok(k) if k.len() == 16 => PskcKey::PreShared(zeroize::Zeroizing::new(k)),
                _ => {
                    return Err(ApiError::bad_request(
                        "psk_hex: an AES-128 key is 32 hexadecimal digits".to_string(),
                    ));
                }
            }
        }
        (None, Some(password)) => PskcKey::Password(password),
        (None, None) => PskcKey::None,
    };
    let report = state
        .admin
        .import_token_file(&actor, &b.data, b.format, &key)
        .await
        .api(&state)?;
    Ok(Json(json!(report)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    user: String,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    pin: Option<zeroize::Zeroizing<String>>,
}

async fn post_token_assign(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let b: AssignBody = body(&bytes)?;
    let t = state
        .admin
        .assign_token(&actor, &serial, &b.user, b.realm.as_deref(), b.pin)
        .await
        .api(&state)?;
    Ok(Json(json!(t)))
}

// ---------------------------------------------------------------- configuration objects

/// The JSON key of a kind's list (`{"applications": [...]}`).
trait Collection: ConfigObject + DeserializeOwned {
    const COLLECTION: &'static str;
    /// The object as answers show it: without secrets.
    fn public(self) -> Self {
        self
    }
}

impl Collection for RadiusClient {
    const COLLECTION: &'static str = "radius_clients";
    fn public(mut self) -> Self {
        self.secret = None;
        self
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretQuery {
    /// Include shared secrets (administrators only).
    #[serde(default)]
    show_secret: bool,
}

impl Collection for Application {
    const COLLECTION: &'static str = "applications";
}
impl Collection for Realm {
    const COLLECTION: &'static str = "realms";
}
impl Collection for UserSourceDef {
    const COLLECTION: &'static str = "user_sources";
    fn public(mut self) -> Self {
        if let Some(l) = &mut self.ldap {
            l.bind_password = None;
        }
        self
    }
}

impl Collection for tessera_core::model::SamlServiceProvider {
    const COLLECTION: &'static str = "saml_sps";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: String,
    application: String,
}

/// `POST /saml-sps/import?name=&application=`: a service provider from its metadata (the
/// request body, XML).
async fn import_saml_sp(
    state: St,
    auth: Authed,
    Query(q): Query<ImportQuery>,
    bytes: Bytes,
) -> ApiResult<Response> {
    use tessera_core::model::SamlServiceProvider;
    let actor = auth.write()?;
    let xml = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the metadata is not UTF-8"))?;
    let sp: SamlServiceProvider = crate::saml::sp_from_metadata(xml, &q.name, &q.application)
        .map_err(ApiError::bad_request)?;
    create(&state, &actor, sp).await
}

async fn list_objects<T: Collection>(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    let objects: Vec<T> = state
        .admin
        .list::<T>()
        .into_iter()
        .map(Collection::public)
        .collect();
    Ok(Json(json!({ T::COLLECTION: objects })))
}

async fn post_objects<T: Collection>(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let object: T = body(&bytes)?;
    create(&state, &actor, object).await
}

/// Creates an object that does not exist yet: 201 with it, or 409.
async fn create<T: Collection>(state: &HttpState, actor: &Actor, object: T) -> ApiResult<Response> {
    if state.admin.get::<T>(object.name()).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{} '{}' already exists", T::LABEL, object.name()),
        ));
    }
    let saved = state.admin.put(actor, object).await.api(state)?;
    Ok((StatusCode::CREATED, Json(json!(saved.public()))).into_response())
}

async fn get_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    Query(q): Query<SecretQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let object = state.admin.get::<T>(&name).api(&state)?;
    if q.show_secret {
        auth.write()?;
        return Ok(Json(json!(object)));
    }
    Ok(Json(json!(object.public())))
}

async fn put_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let object: T = body(&bytes)?;
    if !name.eq_ignore_ascii_case(object.name()) {
        return Err(ApiError::bad_request(format!(
            "name: the body names '{}' but the path names '{name}'",
            object.name()
        )));
    }
    let saved = state.admin.put(&actor, object).await.api(&state)?;
    Ok(Json(json!(saved.public())))
}

async fn delete_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state.admin.delete::<T>(&actor, &name).await.api(&state)?;
    Ok(Json(json!({ "deleted": name })))
}

impl Collection for tessera_core::model::ApiClient {
    const COLLECTION: &'static str = "api_clients";
    fn public(mut self) -> Self {
        self.secret_hash = None;
        self
    }
}

async fn get_api_clients(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    let clients: Vec<_> = state
        .admin
        .list::<tessera_core::model::ApiClient>()
        .into_iter()
        .map(Collection::public)
        .collect();
    Ok(Json(json!({ "api_clients": clients })))
}

async fn get_api_client(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let c = state
        .admin
        .get::<tessera_core::model::ApiClient>(&name)
        .api(&state)?;
    Ok(Json(json!(c.public())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiClientBody {
    name: String,
    #[serde(rename = "type", default)]
    kind: tessera_core::model::ApiClientKind,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    allowed_ips: Vec<Net>,
    #[serde(default)]
    rate_limit_per_minute: u32,
    #[serde(default)]
    token_lifetime_seconds: Option<u32>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    id_token_alg: Option<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    backchannel_ca_pem: Option<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    require_pkce: Option<bool>,
    /// A public OIDC client: no secret, PKCE always.
    #[serde(default)]
    public: bool,
}

/// Creates an API client with a new client id and secret; the secret is in this answer only
/// (none for a public client).
async fn post_api_clients(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let b: NewApiClientBody = body(&bytes)?;
    let created = state
        .admin
        .create_api_client(
            &actor,
            tessera_core::admin::NewApiClient {
                name: b.name,
                kind: b.kind,
                application: b.application,
                scopes: b.scopes,
                allowed_ips: b.allowed_ips,
                rate_limit_per_minute: b.rate_limit_per_minute,
                token_lifetime_seconds: b.token_lifetime_seconds,
                description: b.description,
                redirect_uris: b.redirect_uris,
                id_token_alg: b.id_token_alg,
                backchannel_logout_uri: b.backchannel_logout_uri,
                backchannel_ca_pem: b.backchannel_ca_pem,
                post_logout_redirect_uris: b.post_logout_redirect_uris,
                require_pkce: b.require_pkce,
                public: b.public,
            },
        )
        .await
        .api(&state)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "api_client": created.client.public(),
            "client_secret": created.client_secret.as_ref().map(|s| s.as_str()),
        })),
    )
        .into_response())
}

async fn patch_api_client(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let patch: tessera_core::admin::ApiClientPatch = body(&bytes)?;
    let c = state
        .admin
        .update_api_client(&actor, &name, patch)
        .await
        .api(&state)?;
    Ok(Json(json!(c.public())))
}

/// The routes of one kind of configuration object under `base`.
fn object_routes<T: Collection>(router: Router<HttpState>, base: &str) -> Router<HttpState> {
    router
        .route(base, get(list_objects::<T>).post(post_objects::<T>))
        .route(
            &format!("{base}/{{name}}"),
            get(get_object::<T>)
                .put(put_object::<T>)
                .delete(delete_object::<T>),
        )
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
        .api(&state)?;
    Ok(Json(json!(s)))
}

async fn get_config(
    state: St,
    auth: Authed,
    Query(q): Query<SecretsQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let d = state.admin.export().await.api(&state)?;
    if q.show_secrets {
        auth.write()?;
        return Ok(Json(json!(d)));
    }
    Ok(Json(json!(d.without_secrets())))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretsQuery {
    #[serde(default)]
    show_secrets: bool,
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
    .api(&state)?;
    Ok(Json(json!({ "dry_run": q.dry_run, "changes": changes })))
}

async fn get_audit(state: St, auth: Authed, Query(q): Query<AuditQuery>) -> ApiResult<Json<Value>> {
    auth.read()?;
    let records = state.admin.audit_records(&q).await.api(&state)?;
    Ok(Json(json!({ "records": records })))
}

async fn post_logout(state: St, _auth: Authed, headers: HeaderMap) -> ApiResult<Json<Value>> {
    if let Some(token) = bearer(&headers) {
        state.admin.logout(token).await.api(&state)?;
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
