//! What the OAuth endpoints answer when they refuse: RFC 6749 §5.2's error codes, RFC 6750
//! §3.1's for bearer tokens, and the server's own (unavailable, shed, a fault), each mapped to
//! its status and headers in one exhaustive match.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth refusal; the text is the `error_description`.
#[derive(Debug)]
pub(crate) enum OAuthError {
    InvalidRequest(String),
    /// The client did not authenticate (answered with a Basic challenge).
    InvalidClient(String),
    InvalidGrant(String),
    UnauthorizedClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
    AccessDenied(String),
    /// The client's tokens lack the scope the endpoint needs (RFC 6750 §3.1).
    InsufficientScope(String),
    /// The bearer token is unknown, expired, revoked or of another role (RFC 6750 §3.1).
    InvalidToken(String),
    /// Too many requests (of the client, the address, codes to the user): try again after
    /// `retry_after` seconds.
    TooManyRequests {
        why: String,
        retry_after: u64,
    },
    /// The store or a directory did not answer, or the setup is incomplete: try again.
    Unavailable(String),
    /// Too many passwords wait to be checked: the request was shed; try again in a second.
    Busy,
    /// A fault, logged where it happened.
    Server(String),
}

impl OAuthError {
    /// The answer to an engine fault (logged here): shed when the hashing queue is full, else
    /// a fault.
    pub(crate) fn engine(e: &tessera_core::engine::EngineError, what: &str) -> OAuthError {
        if e.is_busy() {
            tracing::warn!(error = %e, "{what}: shed");
            return OAuthError::Busy;
        }
        tracing::error!(error = %e, "{what}");
        OAuthError::Server("try again".into())
    }

    /// The store did not answer.
    pub(crate) fn unavailable() -> OAuthError {
        OAuthError::Unavailable("try again".into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code, description, extra) = match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d, None),
            OAuthError::InvalidClient(d) => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                d,
                Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                )),
            ),
            OAuthError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d, None),
            OAuthError::UnauthorizedClient(d) => {
                (StatusCode::BAD_REQUEST, "unauthorized_client", d, None)
            }
            OAuthError::UnsupportedGrantType(d) => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type", d, None)
            }
            OAuthError::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d, None),
            OAuthError::AccessDenied(d) => (StatusCode::FORBIDDEN, "access_denied", d, None),
            OAuthError::InsufficientScope(d) => {
                (StatusCode::FORBIDDEN, "insufficient_scope", d, None)
            }
            OAuthError::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                d,
                Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                )),
            ),
            OAuthError::TooManyRequests { why, retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                why,
                HeaderValue::from_str(&retry_after.to_string())
                    .ok()
                    .map(|v| (header::RETRY_AFTER, v)),
            ),
            OAuthError::Unavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                d,
                None,
            ),
            OAuthError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again".to_string(),
                Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            ),
            OAuthError::Server(d) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", d, None),
        };
        let mut res = (
            status,
            axum::Json(json!({"error": code, "error_description": description})),
        )
            .into_response();
        if let Some((name, value)) = extra {
            res.headers_mut().insert(name, value);
        }
        super::no_store(&mut res);
        res
    }
}
