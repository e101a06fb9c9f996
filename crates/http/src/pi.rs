//! The privacyIDEA JSON envelope (reference §3.1) and its errors.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A successful answer: `result.status` true, with `value`, optional `authentication` (validate
/// endpoints only) and `detail`.
pub fn envelope(value: Value, authentication: Option<&str>, detail: Value) -> Value {
    let mut result = json!({ "status": true, "value": value });
    if let Some(a) = authentication {
        result["authentication"] = Value::String(a.into());
    }
    json!({
        "jsonrpc": "2.0",
        "id": if authentication.is_some() { 2 } else { 1 },
        "version": format!("Tessera {VERSION} (privacyIDEA 3.x compatible)"),
        "versionnumber": VERSION,
        "time": now_f64(),
        "result": result,
        "detail": detail,
    })
}

/// An error answer: `result.status` false with `error.code` and `error.message`.
#[derive(Debug, Clone)]
pub struct PiError {
    pub http: StatusCode,
    pub code: i64,
    pub message: String,
    /// Seconds after which the client may try again (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl PiError {
    /// 905: a missing or malformed parameter.
    pub fn parameter(message: impl Into<String>) -> Self {
        PiError {
            http: StatusCode::BAD_REQUEST,
            code: 905,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 904: the user is not known.
    pub fn user_not_found() -> Self {
        PiError {
            http: StatusCode::BAD_REQUEST,
            code: 904,
            message: "The user can not be found in any resolver in this realm!".into(),
            retry_after: None,
        }
    }

    /// 4031/401: wrong credentials at `/auth`.
    pub fn auth_failed() -> Self {
        PiError {
            http: StatusCode::UNAUTHORIZED,
            code: 4031,
            message: "Authentication failure. Wrong credentials".into(),
            retry_after: None,
        }
    }

    /// 4033/401: a missing or expired authorization token.
    pub fn unauthorized() -> Self {
        PiError {
            http: StatusCode::UNAUTHORIZED,
            code: 4033,
            message: "Authentication failure. Missing or invalid authorization token".into(),
            retry_after: None,
        }
    }

    /// 303/403: the token's role may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        PiError {
            http: StatusCode::FORBIDDEN,
            code: 303,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503: too many passwords wait to be checked; the request was shed (answered with
    /// `Retry-After`). Nothing was decided.
    pub fn busy() -> Self {
        PiError {
            http: StatusCode::SERVICE_UNAVAILABLE,
            code: 503,
            message: "Too many sign-ins are being checked at the moment; try again shortly".into(),
            retry_after: Some(1),
        }
    }

    /// 429: this address made more requests than its budget allows (answered with
    /// `Retry-After`).
    pub fn too_many(retry_after: u32) -> Self {
        PiError {
            http: StatusCode::TOO_MANY_REQUESTS,
            code: 429,
            message: format!(
                "Too many requests from this address; try again in {retry_after} seconds"
            ),
            retry_after: Some(retry_after),
        }
    }

    /// 500: an internal fault; the detail goes to the log under `error_id` only.
    pub fn internal(error_id: &str) -> Self {
        PiError {
            http: StatusCode::INTERNAL_SERVER_ERROR,
            code: 500,
            message: format!("Internal error (error id {error_id}; see the server log)"),
            retry_after: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": 1,
            "version": format!("Tessera {VERSION} (privacyIDEA 3.x compatible)"),
            "versionnumber": VERSION,
            "time": now_f64(),
            "result": {
                "status": false,
                "error": { "code": self.code, "message": format!("ERR{}: {}", self.code, self.message) }
            },
            "detail": Value::Null,
        })
    }
}

impl IntoResponse for PiError {
    fn into_response(self) -> Response {
        let mut res = (self.http, Json(self.body())).into_response();
        if let Some(value) = self
            .retry_after
            .and_then(|v| axum::http::HeaderValue::from_str(&v.to_string()).ok())
        {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        res
    }
}
