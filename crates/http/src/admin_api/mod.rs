//! The admin REST API under `/api/v1`: users, tokens, applications, realms, user sources,
//! settings, the declarative configuration and the audit log. Authenticated by the bearer
//! token from `/auth`; documented by `/api/v1/openapi.json`.

use crate::HttpState;
use crate::validate::bearer;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use tessera_core::admin::{Actor, AdminError};
use tessera_core::model::{AdminSession, Application, RadiusClient, Realm, UserSourceDef};

mod objects;
mod settings;
mod tokens;
mod users;
use objects::*;
use settings::*;
use tokens::*;
use users::*;

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

pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

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

// ---------------------------------------------------------------- tokens

// ---------------------------------------------------------------- configuration objects

// ---------------------------------------------------------------- settings, config, audit

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
