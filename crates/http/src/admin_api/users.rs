//! Users: listing, creating, changing and deleting them, their passwords, SSO sessions and
//! lockouts.

use super::*;
use crate::St;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::admin::NewUserInput;
use tessera_core::engine::{Door, RequestCtx};
use tessera_core::model::UserPatch;
use tessera_core::source::PasswordChangeError;
use zeroize::Zeroizing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    pub(super) source: Option<String>,
    pub(super) search: Option<String>,
    pub(super) user: Option<String>,
    pub(super) realm: Option<String>,
    pub(super) limit: Option<u32>,
    pub(super) offset: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceQuery {
    pub(super) source: Option<String>,
}

pub(super) async fn get_users(
    state: St,
    auth: Authed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
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

pub(super) async fn post_users(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let input: NewUserInput = body(&bytes)?;
    let user = state.admin.create_user(&actor, input).await.api(&state)?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

pub(super) async fn get_user(
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

pub(super) async fn patch_user(
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
pub(super) struct RealmQuery {
    pub(super) realm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    pub(super) password: Zeroizing<String>,
}

/// Sets a user's password in the user's source (an administrator's reset).
pub(super) async fn post_user_password(
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
pub(super) struct SessionQuery {
    pub(super) realm: Option<String>,
    pub(super) id: Option<String>,
}

pub(super) async fn get_user_sessions(
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

pub(super) async fn delete_user_sessions(
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

pub(super) async fn get_user_lockout(
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

pub(super) async fn post_user_unlock(
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

pub(super) async fn get_admin_lockout(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let report = state.admin.admin_lockout(&name).await.api(&state)?;
    Ok(Json(json!(report)))
}

pub(super) async fn post_admin_unlock(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let report = state.admin.unlock_admin(&actor, &name).await.api(&state)?;
    Ok(Json(json!(report)))
}

pub(super) async fn delete_user(
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
