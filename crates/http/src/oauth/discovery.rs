//! What clients read to find their way: the JWKS, the authorization-server metadata
//! (RFC 8414) and the OpenAPI document.

use super::*;
use crate::St;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The OpenAPI document of these endpoints.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(super) async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

pub(super) async fn jwks(state: St) -> Response {
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

pub(super) async fn metadata(state: St) -> Response {
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
