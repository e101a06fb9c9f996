//! Settings, the declarative configuration, the audit log and signing out.

use super::*;
use crate::St;
use crate::validate::bearer;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::admin::Declaration;
use tessera_core::model::AuditQuery;

pub(super) async fn get_settings(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    Ok(Json(json!(state.admin.settings())))
}

pub(super) async fn patch_settings(
    state: St,
    auth: Authed,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let changes = json_map(&bytes)?;
    let s = state
        .admin
        .update_settings(&actor, changes)
        .await
        .api(&state)?;
    Ok(Json(json!(s)))
}

pub(super) async fn get_config(
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
pub(super) struct SecretsQuery {
    #[serde(default)]
    pub(super) show_secrets: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplyQuery {
    #[serde(default)]
    pub(super) dry_run: bool,
    #[serde(default)]
    pub(super) prune: bool,
}

pub(super) async fn post_config(
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

pub(super) async fn get_audit(
    state: St,
    auth: Authed,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let records = state.admin.audit_records(&q).await.api(&state)?;
    Ok(Json(json!({ "records": records })))
}

pub(super) async fn post_logout(
    state: St,
    _auth: Authed,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    if let Some(token) = bearer(&headers) {
        state.admin.logout(token).await.api(&state)?;
    }
    Ok(Json(json!({ "signed_out": true })))
}
