//! Tokens: enrolment, changes, resynchronisation, import and assignment.

use super::*;
use crate::St;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::admin::EnrollInput;
use tessera_core::model::TokenState;
use zeroize::Zeroizing;

pub(super) async fn get_tokens(
    state: St,
    auth: Authed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
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

pub(super) async fn post_tokens(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
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

pub(super) async fn get_token(
    state: St,
    auth: Authed,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let t = state.admin.get_token(&serial).await.api(&state)?;
    Ok(Json(json!(t)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenPatchBody {
    pub(super) description: Option<String>,
    pub(super) max_fail: Option<u32>,
    pub(super) count_window: Option<u32>,
    pub(super) sync_window: Option<u32>,
    pub(super) state: Option<TokenState>,
}

pub(super) async fn patch_token(
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

pub(super) async fn delete_token(
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

pub(super) async fn post_token_reset(
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
pub(super) struct ResyncBody {
    otp1: String,
    otp2: String,
}

pub(super) async fn post_token_resync(
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
pub(super) struct ImportBody {
    /// The file's text.
    pub(super) data: String,
    /// `pskc` or `csv`; default: by the content.
    #[serde(default)]
    pub(super) format: Option<tessera_core::admin::TokenFileFormat>,
    /// PSKC: the pre-shared AES-128 key in hex.
    #[serde(default)]
    pub(super) psk_hex: Option<zeroize::Zeroizing<String>>,
    /// PSKC: the password the key is derived from.
    #[serde(default)]
    pub(super) password: Option<zeroize::Zeroizing<String>>,
}

pub(super) async fn post_tokens_import(
    state: St,
    auth: Authed,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
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
pub(super) struct AssignBody {
    pub(super) user: String,
    #[serde(default)]
    pub(super) realm: Option<String>,
    #[serde(default)]
    pub(super) pin: Option<zeroize::Zeroizing<String>>,
}

pub(super) async fn post_token_assign(
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
